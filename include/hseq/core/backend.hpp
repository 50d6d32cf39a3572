// SPDX-License-Identifier: MIT
/// @file
/// @brief The backend policy concept. It lives in core/ because everything above core (tensors,
/// workspaces, ops, modules, checkpoints) is written against it; the backends that model it
/// (`hseq::cpu` in backend/cpu.hpp, `hseq::cuda` in backend/cuda.hpp) sit one layer up.
///
/// WHAT THIS REPRESENTS: a backend is a stateless policy type (`hseq::cpu`, `hseq::cuda`) naming
/// a memory space and a `Context` that carries run-time resources (threads; a CUDA stream and cuBLAS
/// handle). Modules and models are templates over the backend; ops are overloaded on the backend's
/// `Context` type, so the choice is made at compile time and never by a run-time branch.
///
/// requires: `B::Space` is a memory space tag; `B::Context` is default-constructible;
///   `B::allocate(bytes)` returns memory of that space aligned to at least 256 bytes or throws
///   `hseq::Error`; `B::deallocate(p)` releases it; `B::available()` says whether the backend can
///   run here (false, never a crash, when there is no device).
#pragma once

#include <concepts>
#include <cstddef>

#include "hseq/core/memory_space.hpp"

namespace hseq {

template <class B>
concept Backend = is_memory_space_v<typename B::Space> && std::default_initializable<typename B::Context> &&
                  requires(std::size_t n, void* p) {
                    { B::kName } -> std::convertible_to<char const*>;
                    { B::available() } -> std::same_as<bool>;
                    { B::allocate(n) } -> std::same_as<void*>;
                    B::deallocate(p);
                  };

/// The context type of backend B.
template <class B>
using ContextOf = typename B::Context;

}  // namespace hseq
