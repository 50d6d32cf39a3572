// SPDX-License-Identifier: MIT
/// @file
/// @brief The `StatefulPart` concept: a part of a training run that has state worth saving besides
/// the parameters (an optimizer's moments and step count; later memories, data positions) exposes it
/// as named values through a visitor, so that checkpoints can save and restore it without knowing
/// what the part is.
///
/// WHAT THIS REPRESENTS: `p.visit_state(f)` calls, in a fixed order,
///   `f(name, View<T, Space> v)`   for each state tensor (`T` float or double; `v` aliases the
///                                  part's own memory, so a loader may write through it), and
///   `f(name, std::int64_t& x)`    for each integer scalar (a loader may assign it).
/// requires: names are non-empty, unique within the part, and the same on every call for a part
///   of the same structure; the views stay valid until the part is next changed. Visiting neither
///   changes the part nor depends on the order in which `f` returns. A loader calls `visit_state`
///   twice (once to validate, once to write), so visiting must be cheap and repeatable.
#pragma once

#include <cstdint>
#include <string>

#include "hseq/core/memory_space.hpp"
#include "hseq/core/tensor_view.hpp"

namespace hseq {

namespace detail {
/// Accepts everything a `visit_state` may pass; used only to check the concept.
struct StateVisitorArchetype {
  template <class T, class Space>
  void operator()(std::string const&, View<T, Space>) const {}
  void operator()(std::string const&, std::int64_t&) const {}
};
}  // namespace detail

template <class P>
concept StatefulPart = requires(P& p, detail::StateVisitorArchetype f) { p.visit_state(f); };

}  // namespace hseq
