// SPDX-License-Identifier: MIT
/// @file
/// @brief `Model`: what training, evaluation and checkpoints need of a language model.
///
/// A model is a class `M` built for one backend B and scalar T (`TransformerLm<B, T>`,
/// `Hourglass<B, T, ...>`), so the concept is stated as `Model<M, B, T>`:
///   - Identity and structure: `M::kKind` names the family in checkpoints; `M::Config` holds the
///     structure and hyper-parameters; `explicit M(Config)`; `config()`; `config_json()` writes it
///     (stored in checkpoints, compared on load) and `M::config_from_json(text)` reads it back.
///   - Parameters: `visit_params(f, prefix)` calls `f(name, Param<T, Space>&)` for every parameter
///     in a fixed order (what `nn::ParamStore`, checkpoints and the optimizer bind to).
///   - Training: `forward_workspace(batch, t)` / `backward_workspace(batch, t)` bytes;
///     `double forward(ctx, ids [B, t], targets [B, t], ws, trace)` returns the mean next-token
///     cross-entropy in nats over targets >= 0 (NaN without targets) and records in `trace` what
///     backward needs, including `trace.counted`, the number of targets counted (evaluation weighs
///     batches by it), and `trace.logits` [B, t, vocab] of scalar T (which also pins the model to T);
///     `backward(ctx, trace, ws)` accumulates the gradients of that mean.
///     `M::Trace` is default-constructible and reused across steps.
/// `Trainer` requires it (train/trainer.hpp); generation requires the refinement `CachedModel`.
/// An autoencoder declares `kReconstructsInput` (below): its targets are its inputs.
///
/// Optional members, detected with `requires` where they are used (the concept does not ask for
/// them): `set_phase(name)`, `trace.terms` and `static constexpr kLossTerms` (the term names, for
/// the training log's columns; train/trainer.hpp), and
/// `models::FlopCount flops(std::int64_t t) const`, the model FLOPs per token of a training step at
/// sequence length t (models/flops.hpp), which the benchmarks report. The library's models all
/// have it; it stays optional because training needs no FLOP count (a model without one is
/// benchmarked without FLOP figures).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>

#include "hseq/core/backend.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/parameter.hpp"

namespace hseq::models {

// Staged: the member types first, so a model without `Trace` gets one error naming it instead of a
// cascade from the requirements that use it.
// clang-format 14 mangles concept definitions:
// clang-format off
template <class M, class B, class T>
concept Model =
    Backend<B> &&
    requires {
      { M::kKind } -> std::convertible_to<char const*>;
      typename M::Config;
      typename M::Trace;
    } &&
    std::constructible_from<M, typename M::Config> &&
    std::default_initializable<typename M::Trace> &&
    requires(M& mod, M const& m, std::string const& json, typename B::Context& ctx,
             View<std::int32_t const, typename B::Space> ids, View<std::int32_t const, typename B::Space> targets,
             Arena<typename B::Space>& ws, typename M::Trace& trace, std::int64_t batch, std::int64_t t,
             void (*visit)(std::string const&, nn::Param<T, typename B::Space>&), std::string const& prefix) {
      { m.config() } -> std::same_as<typename M::Config const&>;
      { m.config_json() } -> std::convertible_to<std::string>;
      { M::config_from_json(json) } -> std::same_as<typename M::Config>;
      mod.visit_params(visit, prefix);
      { m.forward_workspace(batch, t) } -> std::convertible_to<std::size_t>;
      { m.backward_workspace(batch, t) } -> std::convertible_to<std::size_t>;
      { m.forward(ctx, ids, targets, ws, trace) } -> std::convertible_to<double>;
      m.backward(ctx, trace, ws);
      { trace.counted } -> std::convertible_to<std::int64_t>;
      { trace.logits } -> std::convertible_to<View<T const, typename B::Space>>;
    };
// clang-format on

/// Whether M's targets are its own inputs (an autoencoder, `static constexpr bool
/// kReconstructsInput = true`, models/seq_autoencoder.hpp): the trainer and the evaluator then
/// pass targets = ids instead of the next bytes. False for language models (the member is absent).
template <class M>
inline constexpr bool kReconstructsInput = requires { requires M::kReconstructsInput; };

}  // namespace hseq::models
