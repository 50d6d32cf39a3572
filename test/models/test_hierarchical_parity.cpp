// SPDX-License-Identifier: MIT
// PyTorch parity of models::Hierarchical (HRED / HAED, full end-to-end mode): the fixtures
// test/fixtures/hierarchical_<variant>.safetensors were written by tools/gen_hierarchical_fixture.py
// from the PyTorch twin in tools/torch_hierarchical.py, which was written from the equations (not
// from this library's code) and checked against torch.nn.GRU / nn.LSTM and
// F.scaled_dot_product_attention before writing. This test needs no Python: per fixture it builds
// the hseq model type the variant names (in double), copies every parameter in by name, and
// compares the logits, the loss, every parameter gradient and the losses of 5 AdamW steps.
//
// Everything is float64 on both sides, so the tolerance is 1e-10 relative (the measured errors are
// ~1e-15): logits and gradients per tensor by the relative L2 error ||hseq - torch|| / ||torch||,
// with a floor of 1e-13 times the norm of all gradients together for a tensor whose gradient is
// nearly cancelled; losses element-wise. A wrong term, layout or gate order moves these errors to
// 1e-3 or more. test/support/parity.hpp does the same for the fp32 fixtures; its helpers are
// float-only, hence the double versions here.
//
// Names must match both ways: every fixture tensor is used (params, grads, ids, targets, logits)
// and every hseq parameter has a param. and grad. tensor, so a parameter one side lacks fails.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/io/safetensors.hpp"
#include "hseq/models/hierarchical.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/train/adamw.hpp"
#include "support/parity.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

#ifndef HSEQ_SOURCE_DIR
#error "HSEQ_SOURCE_DIR must point at the source tree (set by test/CMakeLists.txt)"
#endif

using namespace hseq;

namespace {

constexpr double kTol = 1e-10;
constexpr double kFloor = 1e-13;  // times the norm of all reference gradients (see the file comment)

double rel(double a, double b) { return std::abs(a - b) / std::abs(b); }

/// The largest errors measured, printed once per fixture (the report quotes them).
struct Worst {
  double loss = 0, logits = 0, grad = 0, adamw = 0;
  std::string grad_name;
};

template <class M>
void parity(std::string const& file, nn::RnnKind cell) {
  CAPTURE(file);
  auto f = io::SafetensorsFile::load(std::string(HSEQ_SOURCE_DIR) + "/test/fixtures/" + file);
  // config_from_json refuses a fixture written for other policies (or another K).
  auto cfg = M::config_from_json(f.metadata("config"));
  REQUIRE(cfg.cell == cell);  // the variant the file name promises (a regenerated file cannot drift)
  std::int64_t bsz = std::stoll(f.metadata("batch")), t = std::stoll(f.metadata("seq_len"));
  M m(cfg);
  nn::ParamStore<cpu, double> ps(m);
  cpu::Context ctx;

  // Parameters in by name, both directions covered.
  std::set<std::string> used;
  auto decay_v = nlohmann::json::parse(f.metadata("decay")).get<std::vector<std::string>>();
  std::set<std::string> decayed(decay_v.begin(), decay_v.end());
  for (auto const& e : ps.entries()) {
    CAPTURE(e.name);
    REQUIRE(f.has("param." + e.name));
    REQUIRE(f.has("grad." + e.name));
    f.read_into<double>("param." + e.name, e.param->shape, e.param->value.data);
    used.insert("param." + e.name);
    // Same AdamW decay set as the script's (else the step losses would differ for that reason).
    CHECK(e.param->decay == (decayed.count(e.name) == 1));
  }
  for (auto const& n : decayed) {
    CAPTURE(n);
    CHECK(used.count("param." + n) == 1);
  }

  auto ids_v = f.read<std::int32_t>("ids", Shape{bsz, t});
  auto tg_v = f.read<std::int32_t>("targets", Shape{bsz, t});
  auto logits_ref = f.read<double>("logits", Shape{bsz, t, cfg.vocab});
  used.insert({"ids", "targets", "logits"});
  REQUIRE(std::count(tg_v.begin(), tg_v.end(), -1) > 0);  // the fixture exercises ignored targets
  View<std::int32_t const, HostSpace> ids(ids_v.data(), Shape{bsz, t}), targets(tg_v.data(), Shape{bsz, t});

  Workspace<cpu> ws(m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t));
  typename M::Trace tr;
  auto arena = ws.arena();
  ps.zero_grad(ctx);
  Worst w;
  double loss = m.forward(ctx, ids, targets, arena, tr);
  w.loss = rel(loss, std::stod(f.metadata("loss")));
  CHECK(w.loss <= kTol);
  w.logits = test::l2_diff(tr.logits.data, logits_ref) / test::l2(logits_ref);
  CHECK(w.logits <= kTol);
  m.backward(ctx, tr, arena);

  double global = 0;
  for (auto const& e : ps.entries()) global += std::pow(test::l2(f.read<double>("grad." + e.name, e.param->shape)), 2);
  global = std::sqrt(global);
  for (auto const& e : ps.entries()) {
    CAPTURE(e.name);
    auto g = f.read<double>("grad." + e.name, e.param->shape);
    used.insert("grad." + e.name);
    double err = test::l2_diff(e.param->grad.data, g), norm = test::l2(g);
    CAPTURE(err);
    CAPTURE(norm);
    CHECK(err <= std::max(kTol * norm, kFloor * global));
    double r = err / std::max(norm, 1e-300);
    if (r > w.grad) w.grad = r, w.grad_name = e.name;
  }

  // Every tensor of the fixture was used: a PyTorch parameter without an hseq counterpart fails.
  for (auto const& n : f.names()) {
    CAPTURE(n);
    CHECK(used.count(n) == 1);
  }

  // The fixture's AdamW steps on the same batch, as the script did.
  auto hp = nlohmann::json::parse(f.metadata("adamw"));
  auto torch_losses = nlohmann::json::parse(f.metadata("adamw_losses")).get<std::vector<double>>();
  REQUIRE(torch_losses.size() == hp["steps"].get<std::size_t>());
  train::AdamW<cpu, double> opt(ctx, ps,
                                {hp["lr"].get<double>(), hp["beta1"].get<double>(), hp["beta2"].get<double>(),
                                 hp["eps"].get<double>(), hp["weight_decay"].get<double>()});
  for (std::size_t s = 0; s < torch_losses.size(); ++s) {
    opt.step(ctx);
    ps.zero_grad(ctx);
    arena = ws.arena();
    double l = m.forward(ctx, ids, targets, arena, tr);
    m.backward(ctx, tr, arena);
    CAPTURE(s);
    double r = rel(l, torch_losses[s]);
    CHECK(r <= kTol);
    w.adamw = std::max(w.adamw, r);
  }
  MESSAGE(file << ": max relative error loss " << w.loss << ", logits " << w.logits << ", gradient " << w.grad << " ("
               << w.grad_name << "), AdamW losses " << w.adamw << "; " << ps.entries().size() << " parameters");
}

template <std::int64_t K, class E, class Bb, class D>
using Hier = models::Hierarchical<cpu, double, hier::FixedChunks<K>, E, Bb, D>;

}  // namespace

TEST_CASE("hierarchical parity: HRED with GRU cells (rnn / rnn / rnn, 2 + 2 layers) matches PyTorch") {
  parity<models::Hred<cpu, double, 4>>("hierarchical_hred_gru.safetensors", nn::RnnKind::kGru);
}

TEST_CASE("hierarchical parity: HRED with LSTM cells matches PyTorch") {
  parity<models::Hred<cpu, double, 4>>("hierarchical_hred_lstm.safetensors", nn::RnnKind::kLstm);
}

// context 24 > T: the Transformer backbone's table has 6 rows, the fixture uses the first 4.
TEST_CASE("hierarchical parity: HAED with the RNN decoder (mlp / transformer / rnn) matches PyTorch") {
  parity<models::Haed<cpu, double, 4>>("hierarchical_haed_rnn.safetensors", nn::RnnKind::kGru);
}

TEST_CASE("hierarchical parity: HAED with the Transformer decoder (mlp / transformer / transformer) matches PyTorch") {
  parity<models::Haed<cpu, double, 4, hier::TransformerDecoder>>("hierarchical_haed_transformer.safetensors",
                                                                 nn::RnnKind::kGru);
}

TEST_CASE("hierarchical parity: LSTM encoder, Transformer backbone and decoder (rnn / transformer / transformer)") {
  parity<Hier<4, hier::RnnEncoder, hier::TransformerBackbone, hier::TransformerDecoder>>(
      "hierarchical_mixed_lstm.safetensors", nn::RnnKind::kLstm);
}

}  // namespace HSEQ_TEST_UNIT
