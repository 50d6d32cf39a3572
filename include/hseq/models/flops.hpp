// SPDX-License-Identifier: MIT
/// @file
/// @brief `FlopCount`: model FLOPs per token of one training step (forward + backward), the count
/// behind the benchmarks' throughput and MFU figures. A model that can be counted has the member
/// `models::FlopCount flops(std::int64_t t) const` (t: the sequence length of the step); it is
/// optional in the `Model` concept (models/model.hpp).
///
/// Model FLOPs per token = 6 N_eff + attention term:
///   N_eff   the non-embedding parameters, each weighted by its rate: the fraction of the full-rate
///           positions (tokens) at which it is applied. A weight applied once per token costs 2
///           FLOPs forward and 4 backward (input and weight gradients), so 6 x rate per token. Rate 1
///           everywhere in a Transformer LM (N_eff = N); 1/k inside an Hourglass level shortened by
///           k. Embedding tables (token, position; a lookup, not a product) are excluded: they count
///           in `n_total` only.
///   attn    12 d Tq Tk / T per attention layer and token, for Tq queries attending to Tk keys
///           within a sequence of T tokens (QK^T and PV: 2 x 2 d Tq Tk forward, x 3 with backward,
///           spread over T tokens): 12 L d T for an L-layer LM, so `palm()` is PaLM's 6N + 12 L d T
///           (the attention term not halved for the causal mask) and `causal()` halves the
///           attention term (the products a causal mask leaves).
/// The tied output projection (6 d V per token), normalisation, activations, the loss and the
/// optimizer are not counted (the benchmarks print the head's 6 d V separately).
#pragma once

#include <concepts>
#include <cstdint>
#include <string>

namespace hseq::models {

struct FlopCount {
  double n_total = 0;    ///< every parameter element
  double n_nonemb = 0;   ///< without the embedding tables
  double n_eff = 0;      ///< non-embedding parameters weighted by their rates
  double attn_palm = 0;  ///< attention term per token, not halved for causality

  /// The rate of an embedding table: counted in `n_total` only.
  static constexpr double kEmbedding = -1.0;

  /// FLOPs per token, PaLM's convention (attention not halved).
  double palm() const { return 6.0 * n_eff + attn_palm; }
  /// FLOPs per token with the attention term halved for the causal mask.
  double causal() const { return 6.0 * n_eff + 0.5 * attn_palm; }

  /// Adds `numel` parameter elements applied at `rate` (kEmbedding: a table read by lookup).
  FlopCount& add_count(double numel, double rate) {
    n_total += numel;
    if (rate == kEmbedding) return *this;
    n_nonemb += numel;
    n_eff += numel * rate;
    return *this;
  }
  /// Adds every parameter of `module` (anything with `visit_params`) at the rate `rate_of(name)`,
  /// the name relative to the module ("attn.kv.weight"), so a module whose parts run at two rates
  /// (an attention pool: keys at the input rate, queries at the pooled one) is counted in one call.
  template <class Module, class RateOf>
    requires std::invocable<RateOf&, std::string const&>
  FlopCount& add(Module const& module, RateOf rate_of) {
    // visit_params is not const because it hands out the parameters for binding (nn/parameter.hpp);
    // this visit reads their shapes only, so the const_cast never writes to the module.
    const_cast<Module&>(module).visit_params(
        [&](std::string const& name, auto& p) { add_count(double(p.shape.numel()), double(rate_of(name))); },
        std::string());
    return *this;
  }
  /// Adds every parameter of `module` at one rate.
  template <class Module>
  FlopCount& add(Module const& module, double rate) {
    return add(module, [rate](std::string const&) { return rate; });
  }
  /// Adds an embedding module (every parameter a table read by lookup).
  template <class Module>
  FlopCount& add_embedding(Module const& module) {
    return add(module, kEmbedding);
  }
  /// Adds `layers` attention layers of width d with tq queries attending to tk keys, in a sequence
  /// of t tokens: 12 d tq tk / t each per token.
  FlopCount& add_attention(double layers, double d, double tq, double tk, double t) {
    attn_palm += layers * 12.0 * d * tq * tk / t;
    return *this;
  }
};

}  // namespace hseq::models
