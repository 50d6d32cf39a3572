// SPDX-License-Identifier: MIT
// models::Hierarchical's objectives (spec §2.4, §2.5; docs/hred_haed.md): the IEM objective's
// gradients against finite differences (HAED and HRED), its workspace plan, the phase hook, and a
// two-phase Trainer run (IEM, then the decoder with the encoder and backbone frozen) that learns,
// keeps the frozen parts bit-identical, and resumes in the middle of phase 2 bit-exactly; the
// decoder objective's stopped gradient.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "hseq/models/hierarchical.hpp"
#include "hseq/train/evaluator.hpp"
#include "hseq/train/trainer.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

namespace {
/// ids [B, T] over a small alphabet, with repeats so that accidental hits occur.
Tensor<std::int32_t, cpu> small_ids(Shape s, std::int64_t vocab, std::uint64_t seed) {
  Tensor<std::int32_t, cpu> t(s);
  Rng rng(seed);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = std::int32_t(rng.below(std::uint64_t(vocab)));
  return t;
}
/// Bytes 0 .. vocab-1 (the proposal's segments must be valid ids of a small vocabulary).
std::string small_text(std::int64_t n, std::int64_t vocab, std::uint64_t seed) {
  std::string s;
  Rng rng(seed);
  for (std::int64_t i = 0; i < n; ++i) s += char(rng.below(std::uint64_t(vocab)));
  return s;
}

template <class M>
void gradcheck_iem(typename M::Config mc, char const* label) {
  CAPTURE(label);
  cpu::Context ctx;
  std::int64_t const k = M::kSegment, t = 3 * k, v = mc.vocab;
  M m(mc);
  m.set_iem_proposal(hier::SegmentProposal(small_text(200, v, 4), k));
  m.set_phase("iem");
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 5, 0.3);
  auto ids = small_ids(Shape{2, t}, v, 1), targets = small_ids(Shape{2, t}, v, 2);
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
    CHECK(a.used() == m.forward_workspace(2, t, M::Objective::kIem));
    CHECK(tr.logits.empty());  // no byte logits, no decoder activations
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
}

std::string corpus() {
  std::string text;
  for (int i = 0; i < 300; ++i) text += "abcd efgh abcd ijkl ";
  return text;
}

using Haed = models::Haed<cpu, float, 4>;
Haed::Config haed_config() {
  return {.dim = 32, .heads = 2, .layers = 1, .decoder_layers = 1, .context = 16, .iem_negatives = 16,
          .iem_in_batch = true, .iem_tau = 1.0};
}
train::TrainerConfig two_phase(std::int64_t iem_steps, std::int64_t dec_steps) {
  train::TrainerConfig tc;
  tc.batch = 4;
  tc.seq_len = 16;
  tc.steps = iem_steps + dec_steps;
  tc.warmup = 5;
  tc.lr = 1e-2;
  tc.eval_every = 0;
  tc.eval_windows = 8;
  tc.phases = {{"iem", iem_steps, {"decoder.*", "start", "ln_f.*"}, {}},
               {"decoder", dec_steps, {"encoder.*", "backbone.*", "iem.*"}, {}}};
  return tc;
}
/// Values of the parameters whose names match `pattern`, concatenated.
std::vector<float> values(nn::ParamStore<cpu, float>& ps, std::string const& pattern) {
  std::vector<float> out;
  for (auto const& e : ps.entries())
    if (nn::glob_match(pattern, e.name)) out.insert(out.end(), e.param->value.begin(), e.param->value.end());
  return out;
}
}  // namespace

TEST_CASE("gradcheck: HAED in the IEM objective (sampled + in-batch negatives, learned temperature)") {
  gradcheck_iem<models::Haed<cpu, double, 2>>({.vocab = 5, .dim = 8, .heads = 2, .layers = 1, .decoder_layers = 1,
                                               .mlp_hidden = 8, .context = 6, .iem_negatives = 4,
                                               .iem_in_batch = true, .iem_tau = 1.0},
                                              "haed, sampled + in-batch");
  gradcheck_iem<models::Haed<cpu, double, 2>>({.vocab = 5, .dim = 8, .heads = 2, .layers = 2, .decoder_layers = 1,
                                               .mlp_hidden = 8, .context = 6, .iem_negatives = 3, .iem_tau = 0.7},
                                              "haed, sampled only, two layers");
}

TEST_CASE("gradcheck: HRED in the IEM objective (RNN encoder over the negatives too)") {
  gradcheck_iem<models::Hred<cpu, double, 2>>({.vocab = 5, .dim = 6, .heads = 2, .layers = 1, .decoder_layers = 1,
                                               .cell = nn::RnnKind::kLstm, .context = 6, .iem_negatives = 3,
                                               .iem_in_batch = true, .iem_tau = 1.0},
                                              "hred lstm");
}

TEST_CASE("hierarchical iem: phases, parameters, configuration and errors") {
  using H = models::Haed<cpu, float, 4>;
  H plain({.dim = 8, .heads = 2, .layers = 1, .decoder_layers = 1, .context = 16});
  CHECK_THROWS_WITH_AS(plain.set_phase("iem"), doctest::Contains("needs Config::iem_negatives > 0"), Error);
  CHECK_THROWS_WITH_AS(plain.set_phase("warmup"), doctest::Contains("unknown phase 'warmup' (known: full, iem, decoder)"),
                       Error);
  plain.set_phase("decoder");
  CHECK(plain.objective() == H::Objective::kDecoder);
  CHECK(plain.config_json().find("iem") == std::string::npos);  // a model without IEM: unchanged document
  nn::ParamStore<cpu, float> pp(plain);
  CHECK(pp.count_matching("iem.*") == 0);

  H m(haed_config());
  nn::ParamStore<cpu, float> ps(m);
  CHECK(ps.find("iem.head.weight").shape == (Shape{32, 32}));
  CHECK(ps.find("iem.head.bias").shape == (Shape{32}));
  CHECK(ps.find("iem.log_tau_ratio").shape == (Shape{1}));
  auto c = H::config_from_json(m.config_json());
  CHECK(c.iem_negatives == 16);
  CHECK(c.iem_in_batch);
  CHECK(c.iem_tau == 1.0);
  CHECK(H(c).config_json() == m.config_json());
  cpu::Context ctx;
  CHECK(m.iem_tau(ctx) == 1.0);
  m.set_phase("iem");
  Workspace<cpu> ws(m.forward_workspace(2, 16));
  H::Trace tr;
  auto ids = small_ids(Shape{2, 16}, 256, 3);
  {
    auto a = ws.arena();
    CHECK_THROWS_WITH_AS(m.forward(ctx, ids.cview(), ids.cview(), a, tr), doctest::Contains("set_iem_proposal"), Error);
  }
  CHECK_THROWS_WITH_AS(m.set_iem_proposal(hier::SegmentProposal("abcdefg", 3)), doctest::Contains("segment size 4"),
                       Error);
  m.set_iem_proposal(hier::SegmentProposal(corpus(), 4));
  {
    auto one = small_ids(Shape{2, 4}, 256, 3);
    auto a = ws.arena();
    CHECK_THROWS_WITH_AS(m.forward(ctx, one.cview(), one.cview(), a, tr), doctest::Contains("at least 2"), Error);
  }
  CHECK_THROWS_WITH_AS(H({.dim = 8, .heads = 2, .context = 8, .iem_negatives = -1}),
                       doctest::Contains("iem_negatives -1"), Error);
}

TEST_CASE("hierarchical iem: the same batch draws the same negatives; the loss depends on the proposal's draws") {
  cpu::Context ctx;
  Haed m(haed_config());
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 2);
  m.set_iem_proposal(hier::SegmentProposal(corpus(), 4));
  m.set_phase("iem");
  Workspace<cpu> ws(m.forward_workspace(4, 16));
  Haed::Trace tr;
  auto ids = small_ids(Shape{4, 16}, 256, 3);
  auto run = [&](Tensor<std::int32_t, cpu> const& x) {
    auto a = ws.arena();
    return m.forward(ctx, x.cview(), x.cview(), a, tr);
  };
  double l1 = run(ids);
  std::vector<std::int64_t> draws1 = tr.neg_index;
  double l2 = run(ids);
  CHECK(l1 == l2);
  CHECK(tr.neg_index == draws1);
  auto other = small_ids(Shape{4, 16}, 256, 3);
  other.data()[0] ^= 1;  // another batch: other draws
  run(other);
  CHECK(tr.neg_index != draws1);
}

TEST_CASE("hierarchical iem: two phases with the Trainer (IEM, then the decoder on frozen parts) learn the text") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "repetitive", 0.1);
  Haed m(haed_config());
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 1);
  m.set_iem_proposal(hier::SegmentProposal(data.text(io::TextDataset::Split::kTrain), 4));
  train::Evaluator<cpu, float, Haed> eval(m, data, {4, 16, 8});
  double bpc0 = eval.evaluate(ctx);  // full objective: the untrained decoder's bpc
  std::int64_t const n_iem = 80, n_dec = 80;
  train::Trainer<cpu, float, Haed> trainer(ctx, m, ps, data, two_phase(n_iem, n_dec));
  CHECK(m.objective() == Haed::Objective::kIem);
  auto dec0 = values(ps, "decoder.*"), enc0 = values(ps, "encoder.*");
  std::vector<double> iem_losses;
  for (std::int64_t s = 0; s < n_iem; ++s) {
    iem_losses.push_back(trainer.step(ctx));
    REQUIRE(trainer.last_terms().size() == 1);
    CHECK(std::string(trainer.last_terms()[0].name) == "iem");
  }
  CHECK(std::isnan(trainer.evaluate(ctx)));  // no byte likelihood in the IEM objective
  CHECK(values(ps, "decoder.*") == dec0);   // frozen in phase 1
  CHECK(values(ps, "encoder.*") != enc0);   // trained by the IEM loss
  double iem_first = (iem_losses[0] + iem_losses[1]) / 2, iem_last = 0;
  for (std::int64_t s = n_iem - 10; s < n_iem; ++s) iem_last += iem_losses[std::size_t(s)] / 10;
  CAPTURE(iem_first);
  CAPTURE(iem_last);
  CHECK(iem_last < iem_first - 1.0);
  auto enc = values(ps, "encoder.*"), bb = values(ps, "backbone.*"), iem = values(ps, "iem.*");
  for (std::int64_t s = 0; s < n_dec; ++s) {
    trainer.step(ctx);
    CHECK(std::string(trainer.last_terms()[0].name) == "ce");
  }
  CHECK(m.objective() == Haed::Objective::kDecoder);
  CHECK(values(ps, "encoder.*") == enc);  // bit-identical across the decoder phase
  CHECK(values(ps, "backbone.*") == bb);
  CHECK(values(ps, "iem.*") == iem);
  CHECK(values(ps, "decoder.*") != dec0);
  double bpc = trainer.evaluate(ctx);
  CAPTURE(bpc0);
  CAPTURE(bpc);
  CHECK(bpc < bpc0 - 4.0);  // from about 8 bits per byte
}

TEST_CASE("hierarchical iem: a two-phase run resumed in the middle of the decoder phase continues bit-exactly") {
  using Tr = train::Trainer<cpu, float, Haed>;
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "repetitive", 0.1);
  hier::SegmentProposal q(data.text(io::TextDataset::Split::kTrain), 4);
  auto tc = two_phase(6, 6);
  std::int64_t const stop = 9;
  Haed m1(haed_config());
  nn::ParamStore<cpu, float> p1(m1);
  p1.init(ctx, 7);
  m1.set_iem_proposal(q);
  Tr t1(ctx, m1, p1, data, tc);
  for (std::int64_t s = 0; s < tc.steps; ++s) t1.step(ctx);
  auto path = (std::filesystem::temp_directory_path() / "hseq_hier_iem_resume.safetensors").string();
  {
    Haed m2(haed_config());
    nn::ParamStore<cpu, float> p2(m2);
    p2.init(ctx, 7);
    m2.set_iem_proposal(q);
    Tr t2(ctx, m2, p2, data, tc);
    for (std::int64_t s = 0; s < stop; ++s) t2.step(ctx);
    t2.save(ctx, path);
  }
  Haed m3(haed_config());
  nn::ParamStore<cpu, float> p3(m3);
  p3.init(ctx, 99);
  m3.set_iem_proposal(q);
  Tr t3(ctx, m3, p3, data, tc);
  CHECK(m3.objective() == Haed::Objective::kIem);
  t3.load(ctx, path);
  CHECK(m3.objective() == Haed::Objective::kDecoder);  // the phase follows the restored step
  for (std::int64_t s = stop; s < tc.steps; ++s) t3.step(ctx);
  REQUIRE(t3.losses().size() == std::size_t(tc.steps - stop));
  for (std::int64_t i = 0; i < tc.steps - stop; ++i) {
    CAPTURE(i);
    CHECK(t3.losses()[std::size_t(i)] == t1.losses()[std::size_t(stop + i)]);  // bit-identical
  }
  CHECK(values(p3, "*") == values(p1, "*"));
  std::filesystem::remove(path);
}

TEST_CASE("hierarchical: the decoder objective is the full loss with the gradient stopped at the conditions") {
  using M = models::Hred<cpu, double, 2>;
  cpu::Context ctx;
  M m({.vocab = 7, .dim = 6, .heads = 2, .layers = 1, .decoder_layers = 1, .context = 8});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 9, 0.3);
  auto ids = small_ids(Shape{2, 8}, 7, 1), targets = small_ids(Shape{2, 8}, 7, 2);
  Workspace<cpu> ws(m.forward_workspace(2, 8) + m.backward_workspace(2, 8));
  M::Trace tr;
  auto grads = [&](char const* phase) {
    m.set_phase(phase);
    ps.zero_grad(ctx);
    auto a = ws.arena();
    double loss = m.forward(ctx, ids.cview(), targets.cview(), a, tr);
    m.backward(ctx, tr, a);
    std::vector<std::vector<double>> g;
    for (auto const& e : ps.entries()) g.emplace_back(e.param->grad.begin(), e.param->grad.end());
    return std::pair{loss, g};
  };
  auto [full_loss, full] = grads("full");
  auto [dec_loss, dec] = grads("decoder");
  CHECK(dec_loss == full_loss);
  for (std::size_t i = 0; i < ps.entries().size(); ++i) {
    std::string const& name = ps.entries()[i].name;
    CAPTURE(name);
    bool upstream = nn::glob_match("encoder.*", name) || nn::glob_match("backbone.*", name);
    double mx = 0;
    for (double v : dec[i]) mx = std::max(mx, std::abs(v));
    if (upstream) CHECK(mx == 0.0);
    else if (name != "tok_emb.weight") CHECK(dec[i] == full[i]);  // the table also lost its encoder path
    else CHECK(dec[i] != full[i]);
  }
}

}  // namespace HSEQ_TEST_UNIT
