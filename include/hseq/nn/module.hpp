// SPDX-License-Identifier: MIT
/// @file
/// @brief The module contract, shared aliases, and the `Module` concept.
///
/// WHAT A MODULE REPRESENTS: a differentiable function with named parameters, written as a
/// non-virtual class template `M<Backend, T>` with a run-time `Config` of sizes.
///   - `explicit M(Config)` validates the sizes (clear `hseq::Error` otherwise) and declares the
///     parameters (shapes and initialisers); memory comes later from a `ParamStore`.
///   - `visit_params(f, prefix)` calls `f(prefix + name, Param&)` for every parameter in a fixed
///     order (children's names are prefixed: "attn.q.weight").
///   - `forward(ctx, inputs..., outputs..., Arena& ws) -> Saved` computes the outputs and carves
///     what backward needs from `ws`; `forward_workspace(dims)` is exactly the bytes it carves
///     (computed by running the same carving code on a measuring arena).
///   - `backward(ctx, Saved const&, output grads..., input grads..., Arena& ws)` overwrites the
///     input gradients (an empty view means "not needed") and ACCUMULATES parameter gradients into
///     `Param::grad` (zero them once per step with `ParamStore::zero_grad`). Its scratch is carved
///     from `ws` and released before it returns; `backward_workspace(dims)` is the peak it carves.
///   - Inputs passed to forward must stay unchanged until backward (they are saved by reference).
#pragma once

#include <cstddef>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/parameter.hpp"

namespace hseq::nn {

/// A module's parameter visitor must accept (name, Param&).
template <class M, class T>
concept Module = requires(M& m, typename M::Config const& c) {
  typename M::Config;
  typename M::Saved;
  { m.config() } -> std::convertible_to<typename M::Config const&>;
  m.visit_params([](std::string const&, Param<T, typename M::Space>&) {}, std::string());
};

/// Runs `carve` on a measuring arena and returns the bytes it took: how plans are computed.
template <class Space, class F>
std::size_t measure_workspace(F&& carve) {
  auto a = Arena<Space>::measuring();
  carve(a);
  return a.high_water();
}

}  // namespace hseq::nn
