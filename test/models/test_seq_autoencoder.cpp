// SPDX-License-Identifier: MIT
// models::SeqAutoencoder: gradients of tiny models for every query source, one and two reduction
// steps (input-free: every parameter); the encoder and decoder are bidirectional; the output is a
// function of the latent alone (decode(latent) equals the forward's logits bit for bit, a changed
// latent changes them); the trainer and the evaluator give it targets = ids; configuration and
// input errors name what is wrong; PyTorch parity (two steps: query bank and length mix at a length
// R^2 divides, pooled queries and query bank at a length 7 that R = 2 does not) against the
// fixtures of tools/gen_autoencoder_fixture.py.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "hseq/core/rng.hpp"
#include "hseq/hier/length_resampler.hpp"
#include "hseq/io/safetensors.hpp"
#include "hseq/io/text_dataset.hpp"
#include "hseq/models/model.hpp"
#include "hseq/models/seq_autoencoder.hpp"
#include "hseq/train/evaluator.hpp"
#include "hseq/train/trainer.hpp"
#include "support/gradcheck.hpp"
#include "support/parity.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
template <class Q, std::int64_t R = 2>
using Ae = models::SeqAutoencoder<cpu, double, R, Q>;

static_assert(models::Model<Ae<hier::PooledQueries>, cpu, double>);
static_assert(models::kReconstructsInput<Ae<hier::QueryBank>>);
static_assert(!models::kReconstructsInput<int>);

namespace {

Tensor<std::int32_t, cpu> random_ids(Shape s, std::int64_t vocab, std::uint64_t seed) {
  Tensor<std::int32_t, cpu> t(s);
  Rng rng(seed);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = std::int32_t(rng.below(std::uint64_t(vocab)));
  return t;
}
template <class Q, std::int64_t R = 2>
typename Ae<Q, R>::Config tiny(std::int64_t steps, std::int64_t window = 8) {
  typename Ae<Q, R>::Config c;
  c.vocab = 11, c.dim = 8, c.heads = 2, c.enc_layers = 1, c.dec_layers = 1, c.window = window, c.steps = steps;
  return c;
}
template <class M>
std::vector<double> logits_of(cpu::Context& ctx, M const& m, Tensor<std::int32_t, cpu> const& ids,
                              std::vector<double>* latent = nullptr) {
  std::int64_t const b = ids.shape()[0], t = ids.shape()[1];
  Workspace<cpu> ws(m.forward_workspace(b, t));
  typename M::Trace tr;
  auto a = ws.arena();
  m.forward(ctx, ids.cview(), ids.cview(), a, tr);
  if (latent) *latent = std::vector<double>(tr.latent().data, tr.latent().data + tr.latent().numel());
  return std::vector<double>(tr.logits.data, tr.logits.data + tr.logits.numel());
}

/// Gradient check of a tiny autoencoder on [2, t] ids reconstructing themselves (one target
/// ignored); forward uses exactly its plan, backward exactly the total plan.
template <class M>
void gradcheck_ae(cpu::Context& ctx, M& m, std::int64_t t = 8) {
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 3, 0.3);
  std::int64_t const b = 2;
  auto ids = random_ids(Shape{b, t}, 11, 1);
  auto targets = random_ids(Shape{b, t}, 11, 1);  // the same draws as ids: the input reconstructed
  targets.data()[5] = -1;
  std::size_t plan = m.forward_workspace(b, t) + m.backward_workspace(b, t);
  Workspace<cpu> ws(plan);
  typename M::Trace tr;
  auto loss = [&] {
    auto a = ws.arena();
    return m.forward(ctx, ids.cview(), targets.cview(), a, tr);
  };
  auto grads = [&] {
    auto a = ws.arena();
    m.forward(ctx, ids.cview(), targets.cview(), a, tr);
    CHECK(a.used() == m.forward_workspace(b, t));
    m.backward(ctx, tr, a);
    CHECK(a.high_water() == plan);
  };
  test::GradCheck(ps).run(loss, grads);
}

}  // namespace

TEST_CASE_TEMPLATE("gradcheck: SeqAutoencoder, one and two reduction steps (every parameter)", Q, hier::PooledQueries,
                   hier::QueryBank, hier::LengthMix) {
  cpu::Context ctx;
  for (std::int64_t steps : {1, 2}) {
    CAPTURE(steps);
    Ae<Q> m(tiny<Q>(steps));
    gradcheck_ae(ctx, m);
  }
  Ae<Q, 4> m4(tiny<Q, 4>(1));  // a factor of 4 in one step
  gradcheck_ae(ctx, m4);
}

// Windows that R does not divide, padded with a mask inside the resamplers: 7 -> 4 -> 2 with
// R = 2 (partial groups at both steps: 7 = 3 * 2 + 1, 4 = 2 * 2) and 10 -> 3 with R = 4.
TEST_CASE_TEMPLATE("gradcheck: SeqAutoencoder at windows R^steps does not divide (every parameter)", Q,
                   hier::PooledQueries, hier::QueryBank, hier::LengthMix) {
  cpu::Context ctx;
  Ae<Q> m7(tiny<Q>(2, 7));
  CHECK(m7.latent_length(7) == 2);
  gradcheck_ae(ctx, m7, 7);
  Ae<Q, 4> m10(tiny<Q, 4>(1, 10));
  CHECK(m10.latent_length(10) == 3);
  gradcheck_ae(ctx, m10, 10);
}

TEST_CASE_TEMPLATE("seq_autoencoder: bidirectional: the last byte changes the first position's logits", Q,
                   hier::PooledQueries, hier::QueryBank, hier::LengthMix) {
  cpu::Context ctx;
  Ae<Q> m(tiny<Q>(2));
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 4, 0.3);
  auto ids = random_ids(Shape{1, 8}, 11, 5);
  auto a = logits_of(ctx, m, ids);
  ids.data()[7] = (ids.data()[7] + 1) % 11;
  auto b = logits_of(ctx, m, ids);
  double diff = 0;
  for (std::int64_t v = 0; v < 11; ++v) diff = std::max(diff, std::abs(a[std::size_t(v)] - b[std::size_t(v)]));
  CHECK(diff > 1e-6);
}

TEST_CASE_TEMPLATE("seq_autoencoder: the output is a function of the latent alone", Q, hier::PooledQueries,
                   hier::QueryBank, hier::LengthMix) {
  cpu::Context ctx;
  // (steps, window): divisible, and 7 -> 4 -> 2 (padded)
  for (auto [steps, t] : {std::pair<std::int64_t, std::int64_t>{1, 8}, {2, 8}, {2, 7}}) {
    CAPTURE(steps);
    CAPTURE(t);
    Ae<Q> m(tiny<Q>(steps, t));
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 6, 0.3);
    std::int64_t const m_rows = m.latent_length(t);
    CHECK(m_rows == (t == 8 ? 8 / m.reduction() : 2));
    auto ids = random_ids(Shape{2, t}, 11, 7);
    std::vector<double> lat;
    auto full = logits_of(ctx, m, ids, &lat);
    REQUIRE(lat.size() == std::size_t(2 * m_rows * 8));  // [B, m, d]: the reduction really is to m rows
    Tensor<double, cpu> latent(Shape{2, m_rows, 8});
    std::copy(lat.begin(), lat.end(), latent.data());
    Tensor<double, cpu> out(Shape{2, t, 11});
    Workspace<cpu> ws(m.decode_workspace(2, t));
    auto a = ws.arena();
    m.decode(ctx, latent.cview(), out.view(), a);
    // decode(latent) reproduces the forward bit for bit: nothing but the latent reaches the decoder.
    std::int64_t bad = 0;
    for (std::size_t i = 0; i < full.size(); ++i) bad += out.data()[i] != full[i];
    CHECK(bad == 0);
    // Changing one latent row changes the output.
    latent.data()[3] += 0.5;
    auto a2 = ws.arena();
    m.decode(ctx, latent.cview(), out.view(), a2);
    double diff = 0;
    for (std::size_t i = 0; i < full.size(); ++i) diff = std::max(diff, std::abs(out.data()[i] - full[i]));
    CHECK(diff > 1e-6);
  }
}

TEST_CASE("seq_autoencoder: the trainer and the evaluator give it targets = ids (reconstruction)") {
  cpu::Context ctx;
  std::string text;
  for (int i = 0; i < 400; ++i) text += "abcdefgh"[i % 8] + std::string("xyz") + char('a' + i % 7);
  auto data = io::TextDataset::from_string(text, "text", 0.1);
  using M = models::SeqAutoencoder<cpu, float, 2, hier::PooledQueries>;
  M m({.vocab = 256, .dim = 32, .heads = 2, .enc_layers = 1, .dec_layers = 1, .window = 16, .steps = 1});
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 3);
  train::TrainerConfig tc;
  tc.batch = 8, tc.seq_len = 16, tc.steps = 150, tc.warmup = 5, tc.lr = 3e-3, tc.eval_every = 0;
  train::Trainer<cpu, float, M> tr(ctx, m, p, data, tc);
  train::Evaluator<cpu, float, M> ev(m, data, {.batch = 8, .seq_len = 16, .windows = 0, .accuracy = true});
  REQUIRE(ev.num_windows() == 12);
  double before = ev.measure(ctx).accuracy;
  for (int i = 0; i < 150; ++i) tr.step(ctx);
  train::EvalResult after = ev.measure(ctx);
  // Trained on its own input (targets = ids), the reconstruction accuracy rises well above where it
  // starts (the pooled residual already copies some bytes at initialisation); trained on the next
  // bytes instead, it would fall.
  CHECK(before < 0.5);
  CHECK(after.accuracy > before + 0.2);
  CHECK(after.targets == 12 * 16);  // every position of the 12 windows is a target (its own byte)
  // The trainer's validation counts the reconstructed bytes too (its CSV column val_accuracy).
  auto const cols = tr.log_columns();
  CHECK(std::find(cols.begin(), cols.end(), "val_accuracy") != cols.end());
  tr.evaluate(ctx, 0);
  CHECK(tr.last_eval().accuracy == after.accuracy);
}

TEST_CASE("seq_autoencoder: bad configurations and inputs are refused naming the sizes") {
  cpu::Context ctx;
  using P = hier::PooledQueries;
  auto bad = [](auto mutate) {
    auto c = tiny<P>(1);
    mutate(c);
    return c;
  };
  CHECK_THROWS_WITH_AS(Ae<P>(bad([](auto& c) { c.window = 0; })), doctest::Contains("window 0 must be positive"), Error);
  CHECK_NOTHROW(Ae<P>(bad([](auto& c) { c.window = 9; })));  // padded: 9 -> 5
  CHECK_THROWS_WITH_AS(Ae<P>(bad([](auto& c) { c.steps = 0; })), doctest::Contains("steps 0 >= 1"), Error);
  CHECK_THROWS_WITH_AS(Ae<P>(bad([](auto& c) { c.heads = 3; })), doctest::Contains("heads dividing dim"), Error);
  Ae<P> m(tiny<P>(2));
  nn::ParamStore<cpu, double> ps(m);
  Workspace<cpu> ws(m.forward_workspace(1, 16) + (1 << 20));
  Ae<P>::Trace tr;
  auto run = [&](Shape s) {
    auto ids = random_ids(s, 11, 1);
    auto a = ws.arena();
    return m.forward(ctx, ids.cview(), ids.cview(), a, tr);
  };
  CHECK(std::isfinite(run(Shape{1, 6})));  // padded: 6 -> 3 -> 2
  CHECK_THROWS_WITH_AS(run(Shape{1, 16}), doctest::Contains("length 16 exceeds the window 8"), Error);
  CHECK(std::isfinite(run(Shape{1, 4})));  // a shorter window is fine
  Ae<hier::LengthMix> mix(tiny<hier::LengthMix>(1));
  nn::ParamStore<cpu, double> ps2(mix);
  Workspace<cpu> ws2(mix.forward_workspace(1, 8));
  Ae<hier::LengthMix>::Trace tr2;
  auto ids = random_ids(Shape{1, 4}, 11, 1);
  auto a = ws2.arena();
  CHECK_THROWS_WITH_AS(mix.forward(ctx, ids.cview(), ids.cview(), a, tr2),
                       doctest::Contains("length 4 differs from the window 8 that the 'mix' query source is fixed to"),
                       Error);
  // A checkpoint's configuration of another reduction or query source is refused.
  std::string json = Ae<P>(tiny<P>(1)).config_json();
  CHECK_THROWS_WITH_AS(Ae<hier::QueryBank>::config_from_json(json),
                       doctest::Contains("reduces by 2 with queries 'pool', this model type by 2 with 'bank'"), Error);
  CHECK(Ae<P>::config_from_json(json).window == 8);
}

// ---------------------------------------------------------------------------------------------
// PyTorch parity: test/fixtures/autoencoder_parity{,_mix,_padded,_padded_bank}.safetensors were
// written by tools/gen_autoencoder_fixture.py from the twin in tools/torch_autoencoder.py (written
// from the equations of this model's and hier/length_resampler.hpp's file comments, and checked
// against F.scaled_dot_product_attention and F.avg_pool1d before writing). The _padded ones have
// n = window = 7, so 7 -> 4 -> 2: a partial pooled group, a cut expansion, ceil-sized banks.
// Everything is float64 on both sides, so the tolerance is 1e-10 relative, as
// test/models/test_hierarchical_parity.cpp (both use test/support/parity.hpp's double helpers):
// the loss element-wise, logits, latent and gradients
// per tensor by ||hseq - torch|| / ||torch||, with a floor of 1e-13 times the norm of all
// gradients together for a nearly cancelled gradient. Names must match both ways.

#ifndef HSEQ_SOURCE_DIR
#error "HSEQ_SOURCE_DIR must point at the source tree (set by test/CMakeLists.txt)"
#endif

namespace {

constexpr double kParityTol = 1e-10;
constexpr double kParityFloor = 1e-13;  // times the norm of all reference gradients


template <class Q>
void autoencoder_parity(std::string const& file) {
  using M = Ae<Q>;
  CAPTURE(file);
  auto f = io::SafetensorsFile::load(std::string(HSEQ_SOURCE_DIR) + "/test/fixtures/" + file);
  auto cfg = M::config_from_json(f.metadata("config"));  // refuses another R or query source
  REQUIRE(cfg.steps == 2);
  std::int64_t const bsz = std::stoll(f.metadata("batch")), t = std::stoll(f.metadata("seq_len")), d = cfg.dim;
  M m(cfg);
  // The metadata is exactly what hseq writes (a checkpoint of this model would carry the same).
  CHECK(m.config_json() == f.metadata("config"));
  REQUIRE((t >= 1 && t <= cfg.window));
  // A bank fixture either uses a window longer than its windows (only the first rows of each bank
  // and position table may be read) or a window R does not divide (banks sized ceil(N / R) rows).
  if constexpr (Q::kWindow == hier::WindowUse::kMaximum) REQUIRE((cfg.window > t || cfg.window % M::kFactor != 0));
  nn::ParamStore<cpu, double> ps(m);
  cpu::Context ctx;

  std::set<std::string> used;
  for (auto const& e : ps.entries()) {
    CAPTURE(e.name);
    REQUIRE(f.has("param." + e.name));
    REQUIRE(f.has("grad." + e.name));
    f.read_into<double>("param." + e.name, e.param->shape, e.param->value.data);
    used.insert("param." + e.name);
  }
  auto ids_v = f.read<std::int32_t>("ids", Shape{bsz, t});
  auto tg_v = f.read<std::int32_t>("targets", Shape{bsz, t});
  auto logits_ref = f.read<double>("logits", Shape{bsz, t, cfg.vocab});
  auto latent_ref = f.read<double>("latent", Shape{bsz, m.latent_length(t), d});
  used.insert({"ids", "targets", "logits", "latent"});
  // Reconstruction targets: the ids themselves, at least one ignored.
  std::int64_t ignored = 0;
  for (std::size_t i = 0; i < ids_v.size(); ++i) {
    ignored += tg_v[i] == -1;
    CHECK((tg_v[i] == -1 || tg_v[i] == ids_v[i]));
  }
  REQUIRE(ignored > 0);
  View<std::int32_t const, HostSpace> ids(ids_v.data(), Shape{bsz, t}), targets(tg_v.data(), Shape{bsz, t});

  Workspace<cpu> ws(m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t));
  typename M::Trace tr;
  auto arena = ws.arena();
  ps.zero_grad(ctx);
  double const loss = m.forward(ctx, ids, targets, arena, tr), torch_loss = std::stod(f.metadata("loss"));
  double const e_loss = std::abs(loss - torch_loss) / std::abs(torch_loss);
  double const e_latent = test::l2_diff(tr.latent().data, latent_ref) / test::l2(latent_ref);
  double const e_logits = test::l2_diff(tr.logits.data, logits_ref) / test::l2(logits_ref);
  CHECK(e_loss <= kParityTol);
  CHECK(e_latent <= kParityTol);
  CHECK(e_logits <= kParityTol);
  m.backward(ctx, tr, arena);

  double global = 0;
  for (auto const& e : ps.entries()) global += std::pow(test::l2(f.read<double>("grad." + e.name, e.param->shape)), 2);
  global = std::sqrt(global);
  double e_grad = 0;
  std::string worst;
  for (auto const& e : ps.entries()) {
    CAPTURE(e.name);
    auto g = f.read<double>("grad." + e.name, e.param->shape);
    used.insert("grad." + e.name);
    double const err = test::l2_diff(e.param->grad.data, g), norm = test::l2(g);
    CAPTURE(err);
    CAPTURE(norm);
    CHECK(err <= std::max(kParityTol * norm, kParityFloor * global));
    if (err / std::max(norm, 1e-300) > e_grad) e_grad = err / std::max(norm, 1e-300), worst = e.name;
  }
  // Every tensor of the fixture was used: a PyTorch parameter without an hseq counterpart fails.
  for (auto const& n : f.names()) {
    CAPTURE(n);
    CHECK(used.count(n) == 1);
  }
  MESSAGE(file << " (n " << t << " -> latent " << m.latent_length(t) << "): max relative error loss " << e_loss
               << ", latent " << e_latent << ", logits " << e_logits << ", gradient " << e_grad << " (" << worst
               << "); " << ps.entries().size() << " parameters");
}

}  // namespace

TEST_CASE("seq_autoencoder parity: two reduction steps with a query bank, a length mix and pooled queries match "
          "PyTorch, also at a length R does not divide") {
  autoencoder_parity<hier::QueryBank>("autoencoder_parity.safetensors");
  autoencoder_parity<hier::LengthMix>("autoencoder_parity_mix.safetensors");
  autoencoder_parity<hier::PooledQueries>("autoencoder_parity_padded.safetensors");   // 7 -> 4 -> 2
  autoencoder_parity<hier::QueryBank>("autoencoder_parity_padded_bank.safetensors");  // banks of ceil(N / R) rows
}

}  // namespace HSEQ_TEST_UNIT
