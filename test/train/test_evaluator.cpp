// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/hier/segment_proposal.hpp"
#include "hseq/io/text_dataset.hpp"
#include "hseq/models/compressive_transformer.hpp"
#include "hseq/models/hierarchical.hpp"
#include "hseq/models/transformer_lm.hpp"
#include "hseq/models/transformer_xl.hpp"
#include "hseq/train/evaluator.hpp"
#include "hseq/train/trainer.hpp"
#include "train/phased_lm.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using Lm = models::TransformerLm<cpu, float>;
using Split = io::TextDataset::Split;
using EvaluatorF = train::Evaluator<cpu, float, Lm>;

namespace {
std::string corpus() {
  std::string s;
  for (int i = 0; i < 300; ++i) s += "the quick brown fox " + std::to_string(i % 17) + " jumps over the lazy dog.\n";
  return s;
}
Lm::Config tiny() { return {.vocab = 256, .dim = 16, .heads = 2, .layers = 2, .context = 16}; }

/// The validation loop Trainer::evaluate ran before the Evaluator existed, written out: windows
/// k * total / count, padding rows with ignored targets, batches weighted by their counted targets.
double reference_bpc(cpu::Context& ctx, Lm const& m, io::TextDataset const& data, std::int64_t batch, std::int64_t t,
                     std::int64_t windows) {
  std::int64_t total = data.num_windows(Split::kValidation, t);
  std::int64_t count = windows == 0 ? total : std::min(windows, total);
  Workspace<cpu> ws(m.forward_workspace(batch, t));
  Tensor<std::int32_t, cpu> ids(Shape{batch, t}), tg(Shape{batch, t});
  Lm::Trace trace;
  double nll = 0;
  std::int64_t counted = 0;
  for (std::int64_t first = 0; first < count; first += batch) {
    for (std::int64_t r = 0; r < batch; ++r) {
      if (first + r < count) {
        data.window(Split::kValidation, (first + r) * total / count, t, ids.data() + r * t, tg.data() + r * t);
      } else {
        std::fill(ids.data() + r * t, ids.data() + (r + 1) * t, 0);
        std::fill(tg.data() + r * t, tg.data() + (r + 1) * t, -1);
      }
    }
    auto a = ws.arena();
    double loss = m.forward(ctx, ids.cview(), tg.cview(), a, trace);
    nll += loss * double(trace.counted);
    counted += trace.counted;
  }
  return nll / double(counted) / std::log(2.0);
}
}  // namespace

TEST_CASE("evaluator: bits per character equal the old trainer's validation loop bit for bit, padding included") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  Lm m(tiny());
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 3);
  std::int64_t const batch = 3, t = 16;
  std::int64_t total = data.num_windows(Split::kValidation, t);
  REQUIRE(total > 20);
  REQUIRE(total % batch != 0);  // evaluating everything pads the last batch
  train::Evaluator<cpu, float, Lm> ev(m, data, {batch, t, 7});  // 7 windows: two padding rows
  CHECK(ev.num_windows() == 7);
  CHECK(ev.num_windows(0) == total);
  CHECK(ev.num_windows(100000) == total);
  for (std::int64_t w : {std::int64_t(7), std::int64_t(1), std::int64_t(0), total - 1}) {
    CAPTURE(w);
    double got = ev.evaluate(ctx, w);
    CHECK(got == reference_bpc(ctx, m, data, batch, t, w));
  }
  CHECK(ev.evaluate(ctx) == reference_bpc(ctx, m, data, batch, t, 7));  // -1: the config's count
  // Sensitivity: the spread of windows matters (the first 7 windows give another figure).
  CHECK(ev.evaluate(ctx, 7) != reference_bpc(ctx, m, data, batch, t, total));
  // An untrained byte model is near log2(256) bits.
  CHECK(ev.evaluate(ctx, 0) == doctest::Approx(8.0).epsilon(0.03));
}

TEST_CASE("evaluator: Trainer::evaluate delegates to it (same figures, before and after training)") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  Lm m(tiny());
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 3);
  train::TrainerConfig tc;
  tc.batch = 4;
  tc.seq_len = 16;
  tc.steps = 5;
  tc.warmup = 1;
  tc.lr = 3e-3;
  tc.eval_windows = 9;
  train::Trainer<cpu, float, Lm> tr(ctx, m, p, data, tc);
  train::Evaluator<cpu, float, Lm> ev(m, data, {tc.batch, tc.seq_len, tc.eval_windows});
  double before = tr.evaluate(ctx);
  CHECK(before == ev.evaluate(ctx));
  CHECK(before == reference_bpc(ctx, m, data, 4, 16, 9));
  CHECK(tr.state().last_val_bpc == before);
  for (int i = 0; i < 5; ++i) tr.step(ctx);
  double after = tr.evaluate(ctx, 0);
  CHECK(after == ev.evaluate(ctx, 0));
  CHECK(after < before);
  CHECK(tr.evaluator().num_windows() == 9);
}

TEST_CASE("evaluator: a validation split shorter than one window is refused when evaluating, not before") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.0);  // no validation split
  Lm m(tiny());
  nn::ParamStore<cpu, float> p(m);
  train::Evaluator<cpu, float, Lm> ev(m, data, {2, 16, 4});
  CHECK(ev.num_windows() == 0);
  CHECK_THROWS_WITH_AS(ev.evaluate(ctx), doctest::Contains("validation split of corpus (0 bytes) is too short"), Error);
  CHECK_THROWS_AS(EvaluatorF(m, data, {0, 16, 4}), Error);
  CHECK_THROWS_AS(EvaluatorF(m, data, {2, 16, -1}), Error);
}

TEST_CASE("evaluator: measure() reports bpc, the mean loss in nats and the windows; a model without terms has none") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  Lm m(tiny());
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 3);
  EvaluatorF ev(m, data, {3, 16, 7});
  auto r = ev.measure(ctx);
  CHECK(r.bpc == reference_bpc(ctx, m, data, 3, 16, 7));
  CHECK(r.loss == doctest::Approx(r.bpc * std::log(2.0)).epsilon(1e-12));  // the same mean, in nats
  CHECK(r.windows == 7);
  CHECK(r.loss_terms().empty());
  CHECK(std::isnan(r.term("ce")));
  CHECK(ev.evaluate(ctx) == r.bpc);
}

TEST_CASE("evaluator: a model's terms are averaged, and its bpc is the 'ce' term's, bit for bit in a byte objective") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  test::PhasedLm m(tiny());
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 3);
  train::Evaluator<cpu, float, test::PhasedLm> ev(m, data, {3, 16, 7});
  auto r = ev.measure(ctx);
  CHECK(r.bpc == reference_bpc(ctx, m.lm, data, 3, 16, 7));  // the plain LM's figure, padding included
  REQUIRE(r.loss_terms().size() == 1);
  CHECK(std::string(r.loss_terms()[0].name) == "ce");
  CHECK(r.term("ce") == r.loss);
  CHECK(r.term("ce") == doctest::Approx(r.bpc * std::log(2.0)).epsilon(1e-12));
  CHECK(std::isnan(r.term("aux")));
  CHECK(m.rows == std::vector<std::int64_t>{3, 3, 3});  // padded batches are not run again
}

TEST_CASE("evaluator: an objective without byte likelihood reports its own loss and NaN bpc, over the real rows only") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  test::PhasedLm m(tiny());
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 3);
  m.set_phase("aux");
  std::int64_t const batch = 3, t = 16, count = 7;  // batches of 3, 3 and 1 real + 2 padding rows
  train::Evaluator<cpu, float, test::PhasedLm> ev(m, data, {batch, t, count});
  auto r = ev.measure(ctx);
  CHECK(std::isnan(r.bpc));
  CHECK(m.lm_forwards == 0);  // the byte model never ran
  REQUIRE(r.loss_terms().size() == 1);
  CHECK(std::string(r.loss_terms()[0].name) == "aux");
  CHECK(r.term("aux") == r.loss);
  // The mean over the 7 windows: the last batch's padding rows (first id 0) are not scored, the
  // batch is run again over its one real row.
  CHECK(m.rows == std::vector<std::int64_t>{3, 3, 3, 1});
  std::int64_t total = data.num_windows(Split::kValidation, t);
  double first = 0;
  std::vector<std::int32_t> ids(static_cast<std::size_t>(t)), tg(static_cast<std::size_t>(t));
  for (std::int64_t k = 0; k < count; ++k) {
    data.window(Split::kValidation, k * total / count, t, ids.data(), tg.data());
    first += double(ids[0]) / 256.0;
  }
  double const want = m.l2() + first / double(count);
  CHECK(r.loss == doctest::Approx(want).epsilon(1e-12));
  CHECK(std::isnan(ev.evaluate(ctx)));
}

namespace {
using Haed = models::Haed<cpu, float, 4>;
std::string abcd() {
  std::string text;
  for (int i = 0; i < 300; ++i) text += "abcd efgh abcd ijkl ";
  return text;
}
}  // namespace

TEST_CASE("evaluator: HAED's IEM phase is scored by its IEM loss, NaN bpc, padding rows dropped; full gives bpc") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(abcd(), "abcd", 0.1);
  Haed m({.dim = 32,
          .heads = 2,
          .layers = 1,
          .decoder_layers = 1,
          .context = 16,
          .iem_negatives = 16,
          .iem_in_batch = true,
          .iem_tau = 1.0});
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 1);
  m.set_iem_proposal(hier::SegmentProposal(data.text(Split::kTrain), 4));
  m.set_phase("iem");
  std::int64_t const t = 16, count = 6;  // a batch of 4, then 2 real rows and 2 padding rows
  train::Evaluator<cpu, float, Haed> ev(m, data, {4, t, count});
  auto r = ev.measure(ctx);
  CHECK(std::isnan(r.bpc));
  REQUIRE(r.loss_terms().size() == 1);
  CHECK(std::string(r.loss_terms()[0].name) == "iem");
  CHECK(std::isfinite(r.loss));
  CHECK(r.term("iem") == r.loss);
  // By hand: the IEM forward over windows 0-3 as [4, 16] and 4-5 as [2, 16], weighted by rows.
  std::int64_t total = data.num_windows(Split::kValidation, t);
  auto batch_loss = [&](std::int64_t from, std::int64_t rows) {
    Tensor<std::int32_t, cpu> ids(Shape{rows, t}), tg(Shape{rows, t});
    for (std::int64_t k = 0; k < rows; ++k)
      data.window(Split::kValidation, (from + k) * total / count, t, ids.data() + k * t, tg.data() + k * t);
    Workspace<cpu> ws(m.forward_workspace(rows, t));
    Haed::Trace tr;
    auto a = ws.arena();
    double l = m.forward(ctx, ids.cview(), tg.cview(), a, tr);
    CHECK(tr.logits.empty());  // the IEM forward has no byte logits: the decoder did not run
    return l;
  };
  double const want = (batch_loss(0, 4) * 4.0 + batch_loss(4, 2) * 2.0) / 6.0;
  CHECK(r.loss == want);
  // The same windows in the full objective: a byte likelihood again.
  m.set_phase("full");
  auto full = ev.measure(ctx);
  CHECK(std::isfinite(full.bpc));
  CHECK(full.term("ce") == doctest::Approx(full.bpc * std::log(2.0)).epsilon(1e-12));
  CHECK(std::isnan(full.term("iem")));
}

TEST_CASE("evaluator: a memory model scored segment by segment over a memory covering the window equals one pass") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  using Xl = models::TransformerXl<cpu, double>;
  Xl m({.vocab = 256, .dim = 16, .heads = 2, .layers = 2, .context = 24, .mem_len = 8});
  nn::ParamStore<cpu, double> ps(m);
  ps.init(ctx, 3);
  // One pass of 24 bytes, no memory; then segments of 8 over a memory of 16 rows (covering every
  // earlier byte of the window: the same attention), and over the model's own 8 rows (not).
  train::Evaluator<cpu, double, Xl> whole(m, data, {4, 24, 10});
  train::Evaluator<cpu, double, Xl> covered(m, data, {.batch = 4, .seq_len = 24, .windows = 10, .segment = 8, .memory_rows = 16});
  train::Evaluator<cpu, double, Xl> short_mem(m, data, {.batch = 4, .seq_len = 24, .windows = 10, .segment = 8});
  // A bound memory (a trainer's) is neither read nor moved by any of them.
  auto train_mem = m.make_memory(3);
  m.bind_memory(&train_mem);
  double const a = whole.evaluate(ctx), b = covered.evaluate(ctx), c = short_mem.evaluate(ctx);
  CHECK(m.bound_memory() == &train_mem);
  CHECK(train_mem.fill() == 0);
  CHECK(std::isfinite(a));
  CHECK(b == doctest::Approx(a).epsilon(1e-12));
  CHECK(std::abs(c - a) > 1e-9);  // a memory of 8 rows forgets the window's first bytes
  // The same holds for the Compressive Transformer (no compression while the memory covers the window).
  using Ct = models::CompressiveTransformer<cpu, double, hier::MeanPool<2>>;
  Ct::Config cc;
  cc.vocab = 256, cc.dim = 16, cc.heads = 2, cc.layers = 2, cc.context = 24, cc.mem_len = 8, cc.cmem_len = 4;
  Ct ct(cc);
  nn::ParamStore<cpu, double> pct(ct);
  pct.init(ctx, 4);
  train::Evaluator<cpu, double, Ct> ct_whole(ct, data, {4, 24, 10});
  train::Evaluator<cpu, double, Ct> ct_covered(ct, data, {.batch = 4, .seq_len = 24, .windows = 10, .segment = 8, .memory_rows = 16});
  CHECK(ct_covered.evaluate(ctx) == doctest::Approx(ct_whole.evaluate(ctx)).epsilon(1e-12));
  // Segments that do not divide the window, or segments for a model without a memory, are refused.
  CHECK_THROWS_WITH_AS((train::Evaluator<cpu, double, Xl>(m, data, {.batch = 4, .seq_len = 24, .segment = 7})),
                       doctest::Contains("segments of 7 bytes must divide the windows of 24"), Error);
  Lm lm(tiny());
  CHECK_THROWS_WITH_AS((EvaluatorF(lm, data, {.batch = 2, .seq_len = 16, .segment = 8})),
                       doctest::Contains("for models with a memory"), Error);
}

TEST_CASE("evaluator: score_after scores only the bytes after one byte; accuracy counts the logits' argmax hits") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  Lm m(tiny());
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 5);
  train::TrainerConfig tc;
  tc.batch = 8, tc.seq_len = 16, tc.steps = 60, tc.warmup = 1, tc.lr = 1e-2, tc.eval_every = 0;
  train::Trainer<cpu, float, Lm> tr(ctx, m, p, data, tc);
  for (int i = 0; i < 60; ++i) tr.step(ctx);  // some bytes after ' ' become predictable
  std::int64_t const t = 16, windows = 7;
  std::int32_t const after = ' ';
  // Reference: one forward over the 7 windows; NLL and argmax at the positions whose id is ' '.
  std::int64_t const total = data.num_windows(Split::kValidation, t);
  Tensor<std::int32_t, cpu> ids(Shape{windows, t}), tg(Shape{windows, t});
  for (std::int64_t r = 0; r < windows; ++r)
    data.window(Split::kValidation, r * total / windows, t, ids.data() + r * t, tg.data() + r * t);
  Workspace<cpu> ws(m.forward_workspace(windows, t));
  Lm::Trace trace;
  auto arena = ws.arena();
  m.forward(ctx, ids.cview(), tg.cview(), arena, trace);
  double nll = 0;
  std::int64_t scored = 0, hits = 0, every = 0;
  for (std::int64_t i = 0; i < windows * t; ++i) {
    every += tg.data()[i] >= 0;
    if (ids.data()[i] != after) continue;
    float const* row = trace.logits.data + i * 256;
    double mx = *std::max_element(row, row + 256), z = 0;
    for (int v = 0; v < 256; ++v) z += std::exp(double(row[v]) - mx);
    nll += std::log(z) + mx - double(row[tg.data()[i]]);
    hits += std::max_element(row, row + 256) - row == tg.data()[i];
    ++scored;
  }
  REQUIRE(scored > 10);
  REQUIRE(scored < every);
  REQUIRE(hits > 0);  // the check below can tell a count from zero
  REQUIRE(hits < scored);
  for (std::int64_t batch : {std::int64_t(7), std::int64_t(3)}) {  // 3: the last batch has two padding rows
    CAPTURE(batch);
    train::Evaluator<cpu, float, Lm> ev(m, data, {.batch = batch, .seq_len = t, .windows = windows, .score_after = after,
                                                  .accuracy = true});
    train::EvalResult r = ev.measure(ctx);
    CHECK(r.targets == scored);
    CHECK(r.bpc == doctest::Approx(nll / double(scored) / std::log(2.0)).epsilon(1e-5));
    CHECK(r.accuracy == double(hits) / double(scored));
  }
  // Without score_after every target counts; without accuracy there is none.
  train::Evaluator<cpu, float, Lm> plain(m, data, {.batch = 7, .seq_len = t, .windows = windows});
  train::EvalResult r = plain.measure(ctx);
  CHECK(r.targets == every);
  CHECK(std::isnan(r.accuracy));
  CHECK_THROWS_WITH_AS((EvaluatorF(m, data, {.batch = 2, .seq_len = 16, .score_after = 256})),
                       doctest::Contains("score_after 256 must be a byte value"), Error);
}

TEST_CASE("evaluator: accuracy segment by segment over a covering memory equals one pass (Compressive Transformer)") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  using Ct = models::CompressiveTransformer<cpu, double, hier::MeanPool<2>>;
  Ct ct({.vocab = 256, .dim = 16, .heads = 2, .layers = 2, .context = 24, .mem_len = 8, .cmem_len = 4});
  nn::ParamStore<cpu, double> p(ct);
  p.init(ctx, 9);
  train::EvalConfig whole{.batch = 4, .seq_len = 24, .windows = 10, .score_after = 'o', .accuracy = true};
  train::EvalConfig seg = whole;
  seg.segment = 8, seg.memory_rows = 16;
  train::Evaluator<cpu, double, Ct> a(ct, data, whole), b(ct, data, seg);
  train::EvalResult ra = a.measure(ctx), rb = b.measure(ctx);
  CHECK(ra.targets > 0);
  CHECK(ra.targets == rb.targets);
  CHECK(ra.accuracy == rb.accuracy);
  CHECK(ra.bpc == doctest::Approx(rb.bpc).epsilon(1e-9));
}

}  // namespace HSEQ_TEST_UNIT
