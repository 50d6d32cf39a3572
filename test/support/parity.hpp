// SPDX-License-Identifier: MIT
/// @file
/// @brief Test support for PyTorch parity fixtures: per-tensor comparisons of hseq against a
/// reference computed by tools/gen_*_fixture.py.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/io/safetensors.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/train/adamw.hpp"

namespace hseq::test {

/// ||a - b|| / ||b|| over b.size() elements.
inline double rel_l2(float const* a, std::vector<float> const& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

inline double l2(std::vector<float> const& b) {
  double s = 0;
  for (float x : b) s += double(x) * x;
  return std::sqrt(s);
}

/// ||b|| of a float64 fixture's tensor.
inline double l2(std::vector<double> const& b) {
  double s = 0;
  for (double x : b) s += x * x;
  return std::sqrt(s);
}
/// ||a - b|| (absolute) over b.size() elements, in double.
inline double l2_diff(double const* a, std::vector<double> const& b) {
  double s = 0;
  for (std::size_t i = 0; i < b.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(s);
}

/// Gradient tensors compare by ||hseq - torch|| <= 1e-4 ||torch||, or <= 1e-7 G where G is the
/// norm of all reference gradients together. The floor matters only for tensors whose gradient is
/// nearly cancelled (e.g. a query projection whose queries mostly see one key: exact zero there),
/// where fp32 rounding of the large terms that cancel sets the error, not the tensor's own norm.
inline bool grad_close(float const* a, std::vector<float> const& b, double global) {
  double err = rel_l2(a, b) * l2(b);
  return err <= std::max(1e-4 * l2(b), 1e-7 * global);
}

/// Loads a parity fixture's parameters into model `m` (its store `ps`), then checks the loss, the
/// logits, every parameter gradient and the losses of the fixture's AdamW steps against it.
/// Returns the number of gradient tensors compared.
template <class M>
int check_parity(io::SafetensorsFile const& f, M& m, nn::ParamStore<cpu, float>& ps) {
  std::int64_t bsz = std::stoll(f.metadata("batch")), t = std::stoll(f.metadata("seq_len"));
  cpu::Context ctx;
  for (auto const& e : ps.entries()) {
    auto v = f.read<float>("param." + e.name, e.param->shape);
    std::copy(v.begin(), v.end(), e.param->value.data);
  }
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
  auto logits = f.read<float>("logits", Shape{bsz, t, m.config().vocab});
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
  // The fixture's AdamW steps on the same batch, as the script did.
  auto hp = nlohmann::json::parse(f.metadata("adamw"));
  auto torch_losses = nlohmann::json::parse(f.metadata("adamw_losses")).get<std::vector<double>>();
  train::AdamW<cpu, float> opt(ctx, ps, {hp["lr"].get<double>(), hp["beta1"].get<double>(), hp["beta2"].get<double>(),
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
  return compared;
}

}  // namespace hseq::test
