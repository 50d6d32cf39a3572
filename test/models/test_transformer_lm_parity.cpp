// SPDX-License-Identifier: MIT
// PyTorch parity of TransformerLm: test/fixtures/transformer_lm_parity.safetensors was written by
// tools/gen_lm_fixture.py from a PyTorch model with the same structure and parameter names. This
// test needs no Python: it reads the fixture, copies the parameters in, and compares the logits,
// the loss, every parameter gradient and the losses of 5 AdamW steps (fp32).
//
// Tolerance: 1e-4 relative. Logits and gradients compare per tensor by the relative L2 error
// ||hseq - torch|| / ||torch|| (element-wise relative error is meaningless for entries near zero),
// with the floor described at grad_close; losses compare element-wise. The fixture's references
// are computed in float64 from float32 parameters, so the measured error is hseq's fp32 error
// (~1e-6 typically); 1e-4 leaves room for BLAS differences without hiding a wrong formula (a
// wrong term shifts these errors to 1e-2 or more).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/io/safetensors.hpp"
#include "hseq/models/transformer_lm.hpp"
#include "hseq/train/adamw.hpp"
#include "support/parity.hpp"

#ifndef HSEQ_SOURCE_DIR
#error "HSEQ_SOURCE_DIR must point at the source tree (set by test/CMakeLists.txt)"
#endif

using namespace hseq;
using test::grad_close;
using test::l2;
using test::rel_l2;
using Lm = models::TransformerLm<cpu, float>;

TEST_CASE("transformer_lm parity: logits, loss, every gradient and 5 AdamW steps match PyTorch") {
  auto f = io::SafetensorsFile::load(std::string(HSEQ_SOURCE_DIR) + "/test/fixtures/transformer_lm_parity.safetensors");
  auto cfg = Lm::config_from_json(f.metadata("config"));
  std::int64_t bsz = std::stoll(f.metadata("batch")), t = std::stoll(f.metadata("seq_len"));
  cpu::Context ctx;
  Lm m(cfg);
  nn::ParamStore<cpu, float> ps(m);
  for (auto const& e : ps.entries()) {
    auto v = f.read<float>("param." + e.name, e.param->shape);
    std::copy(v.begin(), v.end(), e.param->value.data);
  }
  auto ids_v = f.read<std::int32_t>("ids", Shape{bsz, t});
  auto tg_v = f.read<std::int32_t>("targets", Shape{bsz, t});
  View<std::int32_t const, HostSpace> ids(ids_v.data(), Shape{bsz, t}), targets(tg_v.data(), Shape{bsz, t});
  Workspace<cpu> ws(m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t));
  Lm::Trace tr;
  auto arena = ws.arena();
  ps.zero_grad(ctx);
  double loss = m.forward(ctx, ids, targets, arena, tr);
  double torch_loss = std::stod(f.metadata("loss"));
  CHECK(std::abs(loss - torch_loss) <= 1e-4 * std::abs(torch_loss));
  auto logits = f.read<float>("logits", Shape{bsz, t, cfg.vocab});
  CHECK(rel_l2(tr.logits.data, logits) <= 1e-4);
  m.backward(ctx, tr, arena);
  double global = 0;
  for (auto const& e : ps.entries()) global += std::pow(l2(f.read<float>("grad." + e.name, e.param->shape)), 2);
  global = std::sqrt(global);
  int compared = 0;
  for (auto const& e : ps.entries()) {
    CAPTURE(e.name);
    auto g = f.read<float>("grad." + e.name, e.param->shape);
    double err = rel_l2(e.param->grad.data, g);
    CAPTURE(err);
    CHECK(grad_close(e.param->grad.data, g, global));
    ++compared;
  }
  CHECK(compared == int(ps.entries().size()));
  CHECK(compared == 4 + 14 * int(cfg.layers));  // tok, pos, ln_f (2), and 14 per block
  // Five AdamW steps on the same batch, as the script did.
  auto hp = nlohmann::json::parse(f.metadata("adamw"));
  auto torch_losses = nlohmann::json::parse(f.metadata("adamw_losses")).get<std::vector<double>>();
  train::AdamW<cpu, float> opt(ps, {hp["lr"].get<double>(), hp["beta1"].get<double>(), hp["beta2"].get<double>(),
                                    hp["eps"].get<double>(), hp["weight_decay"].get<double>()});
  for (std::size_t s = 0; s < torch_losses.size(); ++s) {
    opt.step(ctx);
    ps.zero_grad(ctx);
    arena = ws.arena();
    double l = m.forward(ctx, ids, targets, arena, tr);
    m.backward(ctx, tr, arena);
    CAPTURE(s);
    CHECK(std::abs(l - torch_losses[s]) <= 1e-4 * std::abs(torch_losses[s]));
  }
}
