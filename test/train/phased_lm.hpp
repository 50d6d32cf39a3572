// SPDX-License-Identifier: MIT
/// @file
/// @brief Test support for the trainer and evaluator tests: `PhasedLm`, a model whose objective
/// changes with the phase the way HAED's does. Phase "full" (the default) is the TransformerLm
/// cross-entropy, term "ce". Phase "aux" is an objective without byte likelihood, like HAED's IEM
/// phase: the byte model does not run (`lm_forwards` counts its forwards), no target is counted,
/// no logits exist, and the one term is "aux" = kLambda * mean(ln_f.weight^2) + the mean over the
/// batch's rows of (first id of the row) / 256, so the figure depends on which rows are scored
/// (`rows` records the rows of every forward). Its term names are declared in `kLossTerms`
/// ({"ce", "aux"}, or {"ce"} alone with kDeclareAux = false, to test an undeclared term).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "hseq/core/error.hpp"
#include "hseq/models/transformer_lm.hpp"

namespace hseq::test {

/// The TransformerLm with a handle on its final LayerNorm gain `ln_f.weight` and an extra loss over
/// it, l2 = kLambda * mean(w^2) (the weighting is the model's own, as the trainer expects): the
/// part the trainer and evaluator tests' models share. A model derives from it and adds its kKind,
/// Trace, forward, backward and hooks.
struct GainLm {
  using Lm = models::TransformerLm<cpu, float>;
  using Config = Lm::Config;
  static constexpr double kLambda = 0.25;

  explicit GainLm(Config c) : lm(c) {
    lm.visit_params([&](std::string const& name, nn::Param<float, HostSpace>& p) {
      if (name == "ln_f.weight") gain = &p;
    });
    HSEQ_CHECK(gain != nullptr, "GainLm: no ln_f.weight");
  }
  GainLm(GainLm const&) = delete;
  Config const& config() const { return lm.config(); }
  std::string config_json() const { return lm.config_json(); }
  static Config config_from_json(std::string const& text) { return Lm::config_from_json(text); }
  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    lm.visit_params(f, prefix);
  }
  std::size_t forward_workspace(std::int64_t b, std::int64_t t) const { return lm.forward_workspace(b, t); }
  std::size_t backward_workspace(std::int64_t b, std::int64_t t) const { return lm.backward_workspace(b, t); }

  double l2() const {
    double s = 0;
    for (std::int64_t i = 0; i < gain->value.numel(); ++i) s += double(gain->value[i]) * double(gain->value[i]);
    return kLambda * s / double(gain->value.numel());
  }
  /// d l2 / dw accumulated into the gain's gradient (nothing when the gain is frozen).
  void l2_backward() const {
    if (gain->frozen) return;
    double n = double(gain->value.numel());
    for (std::int64_t i = 0; i < gain->value.numel(); ++i)
      gain->grad[i] += float(kLambda * 2.0 * double(gain->value[i]) / n);
  }

  Lm lm;
  nn::Param<float, HostSpace>* gain = nullptr;
};

template <bool kDeclareAux = true>
struct PhasedLmT : GainLm {
  using GainLm::GainLm;
  static constexpr char const* kKind = "phased_lm";
  static constexpr auto kLossTerms = [] {
    if constexpr (kDeclareAux)
      return std::array<char const*, 2>{"ce", "aux"};
    else
      return std::array<char const*, 1>{"ce"};
  }();
  struct Term {
    char const* name = "";
    double value = 0;
  };
  struct Trace {
    Lm::Trace inner;
    std::int64_t counted = 0;
    View<float const, HostSpace> logits;
    std::array<Term, 1> terms{};
    bool aux = false;  // the objective of the forward that filled it
  };

  /// The aux objective of ids [B, T].
  double aux_loss(View<std::int32_t const, HostSpace> ids) const {
    double first = 0;
    for (std::int64_t r = 0; r < ids.size(0); ++r) first += double(ids.data[r * ids.size(1)]) / 256.0;
    return l2() + first / double(ids.size(0));
  }
  double forward(cpu::Context& ctx, View<std::int32_t const, HostSpace> ids, View<std::int32_t const, HostSpace> tg,
                 Arena<HostSpace>& ws, Trace& tr) const {
    rows.push_back(ids.size(0));
    tr.aux = aux;
    if (aux) {
      tr.counted = 0;
      tr.logits = {};
      tr.terms[0] = {"aux", aux_loss(ids)};
      return tr.terms[0].value;
    }
    ++lm_forwards;
    double ce = lm.forward(ctx, ids, tg, ws, tr.inner);
    tr.counted = tr.inner.counted;
    tr.logits = tr.inner.logits;
    tr.terms[0] = {"ce", ce};
    return ce;
  }
  void backward(cpu::Context& ctx, Trace& tr, Arena<HostSpace>& ws) const {
    if (!tr.aux) {
      lm.backward(ctx, tr.inner, ws);
      return;
    }
    l2_backward();  // the id part has no parameter
  }
  void set_phase(std::string_view name) {
    if (name == "aux")
      aux = true;
    else if (name == "full")
      aux = false;
    else
      HSEQ_FAIL("PhasedLm: unknown phase '" << name << "'");
  }

  bool aux = false;
  mutable std::int64_t lm_forwards = 0;
  mutable std::vector<std::int64_t> rows;
};
using PhasedLm = PhasedLmT<true>;
static_assert(models::Model<PhasedLm, cpu, float>);

}  // namespace hseq::test
