// SPDX-License-Identifier: MIT
// PyTorch parity of Hourglass (attention + attention, and average + repeat; two nested levels; a
// length that needs padding): fixtures written by tools/gen_hourglass_fixture.py from the PyTorch
// twin in tools/torch_hourglass.py. Same comparison and tolerance as the TransformerLm parity test
// (relative L2 error per tensor <= 1e-4 in fp32 with a floor for cancelled gradients, losses
// element-wise). The fixture's references are computed in float64 from float32 parameters.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/io/safetensors.hpp"
#include "hseq/models/hourglass.hpp"
#include "hseq/train/adamw.hpp"
#include "support/parity.hpp"

#ifndef HSEQ_SOURCE_DIR
#error "HSEQ_SOURCE_DIR must point at the source tree (set by test/CMakeLists.txt)"
#endif

using namespace hseq;
using test::grad_close;
using test::l2;
using test::rel_l2;

namespace {

template <class Sh, class Up>
void parity(std::string const& file) {
  using M = models::Hourglass<cpu, float, hier::DynamicHierarchy, Sh, Up>;
  CAPTURE(file);
  auto f = io::SafetensorsFile::load(std::string(HSEQ_SOURCE_DIR) + "/test/fixtures/" + file);
  auto cfg = M::config_from_json(f.metadata("config"));
  std::int64_t bsz = std::stoll(f.metadata("batch")), t = std::stoll(f.metadata("seq_len"));
  REQUIRE(t % cfg.hierarchy.total_factor() != 0);  // the fixture exercises padding
  cpu::Context ctx;
  M m(cfg);
  nn::ParamStore<cpu, float> ps(m);
  int loaded = 0;
  for (auto const& e : ps.entries()) {
    auto v = f.read<float>("param." + e.name, e.param->shape);
    std::copy(v.begin(), v.end(), e.param->value.data);
    ++loaded;
  }
  // Every PyTorch parameter has an hseq counterpart and vice versa.
  int torch_params = 0;
  for (auto const& n : f.names()) torch_params += n.rfind("param.", 0) == 0;
  CHECK(loaded == torch_params);
  auto ids_v = f.read<std::int32_t>("ids", Shape{bsz, t});
  auto tg_v = f.read<std::int32_t>("targets", Shape{bsz, t});
  View<std::int32_t const, HostSpace> ids(ids_v.data(), Shape{bsz, t}), targets(tg_v.data(), Shape{bsz, t});
  Workspace<cpu> ws(m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t));
  typename M::Trace tr;
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
  for (auto const& e : ps.entries()) {
    CAPTURE(e.name);
    auto g = f.read<float>("grad." + e.name, e.param->shape);
    double err = rel_l2(e.param->grad.data, g);
    CAPTURE(err);
    CHECK(grad_close(e.param->grad.data, g, global));
  }
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
}  // namespace

TEST_CASE("hourglass parity: attention pooling + attention upsampling match PyTorch") {
  parity<hier::AttentionPool, hier::AttentionUp>("hourglass_attention_attention.safetensors");
}

TEST_CASE("hourglass parity: average pooling + repeat upsampling match PyTorch") {
  parity<hier::AvgPool, hier::Repeat>("hourglass_avg_repeat.safetensors");
}
