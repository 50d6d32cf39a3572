// SPDX-License-Identifier: MIT
/// @file
/// @brief `MemoryModel`: a model that carries a memory from one batch to the next (Transformer-XL),
/// held outside the model and bound to it explicitly.
///
/// Beyond `Model`: `make_memory(batch)` returns a memory for batches of `batch` rows (`MemoryOf<M>`,
/// a `StatefulPart`: checkpoints save it), `bind_memory(Memory*)` chooses the memory that `forward`
/// reads and updates (nullptr: none, each batch on its own), `bound_memory()` says which is bound,
/// and `reset_state(ctx)` forgets the bound memory's contents.
///
/// Who binds what: the trainer owns the training stream's memory, binds it before every step and
/// saves it as the checkpoint's state group "memory"; the evaluator unbinds it while it scores its
/// independent windows (`UnboundMemory`), so validation neither reads nor moves the training stream.
#pragma once

#include <concepts>
#include <type_traits>
#include <cstdint>
#include <utility>

#include "hseq/core/state.hpp"

namespace hseq::models {

// clang-format off
template <class M>
concept MemoryModel =
    requires(M const& c, std::int64_t batch) { c.make_memory(batch); } &&
    requires(M& m, M const& c, decltype(std::declval<M const&>().make_memory(std::int64_t{}))* mem) {
      m.bind_memory(mem);
      { c.bound_memory() } -> std::convertible_to<decltype(mem)>;
    } &&
    StatefulPart<decltype(std::declval<M const&>().make_memory(std::int64_t{}))>;
// clang-format on

/// The memory type of a memory model (what `make_memory` returns).
template <MemoryModel M>
using MemoryOf = decltype(std::declval<M const&>().make_memory(std::int64_t{}));

namespace detail {
struct NoMemory {};
/// `MemoryOf<M>*` for a memory model, an empty type for any other.
template <class M>
struct MemoryPointer {
  using type = NoMemory;
};
template <MemoryModel M>
struct MemoryPointer<M> {
  using type = MemoryOf<M>*;
};
/// `MemoryOf<M>` for a memory model, an empty type for any other (a member that costs nothing).
template <class M>
struct MemoryOrNone {
  using type = NoMemory;
};
template <MemoryModel M>
struct MemoryOrNone<M> {
  using type = MemoryOf<M>;
};
}  // namespace detail

/// Unbinds a memory model's memory for its lifetime and binds the previous one back (does nothing
/// for other models).
template <class M>
class UnboundMemory {
 public:
  explicit UnboundMemory(M& m) : m_(m) {
    if constexpr (MemoryModel<M>) {
      saved_ = m.bound_memory();
      m.bind_memory(nullptr);
    }
  }
  ~UnboundMemory() {
    if constexpr (MemoryModel<M>) m_.bind_memory(saved_);
  }
  UnboundMemory(UnboundMemory const&) = delete;
  UnboundMemory& operator=(UnboundMemory const&) = delete;

 private:
  M& m_;
  [[no_unique_address]] typename detail::MemoryPointer<M>::type saved_{};
};

}  // namespace hseq::models
