// SPDX-License-Identifier: MIT
/// @file
/// @brief Workspace planning and the bump arena that carves one allocation into aligned views.
///
/// Protocol (CUB's two-phase temporary storage, CUTLASS's get_workspace_size): a module reports how
/// many bytes a call needs (`plan`), the caller allocates once (`Workspace`), and the call carves
/// typed views from an `Arena` over that memory. Nothing allocates in steady-state training. An
/// `Arena` built by `Arena::measuring()` has no memory: it only counts, so the same carving code
/// that forward uses also computes the plan, and the plan cannot drift from what a run uses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "hseq/core/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/shape.hpp"
#include "hseq/core/tensor_view.hpp"

// AddressSanitizer (GCC defines __SANITIZE_ADDRESS__; Clang answers __has_feature): the arena
// poisons what no live view covers, so that an overrun of a workspace view, or a read of scratch
// already released, is reported like one of a heap block although the arena is one allocation.
#if defined(__SANITIZE_ADDRESS__)
#define HSEQ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HSEQ_ASAN 1
#endif
#endif
#if defined(HSEQ_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace hseq {

/// Every carved view starts on this boundary (bytes): enough for AVX-512 and coalesced CUDA loads.
inline constexpr std::size_t kWorkspaceAlignment = 256;

namespace detail {
[[noreturn]] inline void throw_bad_size(std::int64_t n, std::size_t item) {
  HSEQ_FAIL("aligned_bytes: " << n << " elements of " << item << " bytes is not a valid size");
}
}  // namespace detail

/// Bytes of n elements of T rounded up to the workspace alignment.
template <class T>
constexpr std::size_t aligned_bytes(std::int64_t n) {
  if (n < 0 || static_cast<std::size_t>(n) > (SIZE_MAX - kWorkspaceAlignment) / sizeof(T))
    detail::throw_bad_size(n, sizeof(T));
  std::size_t b = sizeof(T) * static_cast<std::size_t>(n);
  return (b + kWorkspaceAlignment - 1) / kWorkspaceAlignment * kWorkspaceAlignment;
}

/// A bump allocator over [base, base + capacity) in memory space `Space`.
template <class Space>
class Arena {
 public:
  Arena(void* base, std::size_t capacity) : base_(static_cast<std::byte*>(base)), capacity_(capacity) {}
  /// An arena that hands out null views and only counts bytes (planning mode).
  static Arena measuring() {
    Arena a(nullptr, SIZE_MAX);
    a.measuring_ = true;
    return a;
  }

  /// Carves a view of `shape`; `what` names the buffer in the error if the arena is exhausted.
  template <class T>
  View<T, Space> take(Shape shape, char const* what = "buffer") {
    std::size_t bytes = aligned_bytes<T>(shape.numel());
    HSEQ_CHECK(bytes <= capacity_ - offset_, "workspace exhausted: '" << what << "' of shape " << shape << " needs "
                                                                      << bytes << " bytes, " << (capacity_ - offset_)
                                                                      << " of " << capacity_ << " remain");
    T* p = measuring_ ? nullptr : reinterpret_cast<T*>(base_ + offset_);
    // Under ASan: the view's bytes readable, the alignment slack after them not.
    unpoison(offset_, sizeof(T) * static_cast<std::size_t>(shape.numel()));
    poison(offset_ + sizeof(T) * static_cast<std::size_t>(shape.numel()), offset_ + bytes);
    offset_ += bytes;
    if (offset_ > high_water_) high_water_ = offset_;
    return View<T, Space>(p, shape);
  }

  /// Current offset; pass it to `rewind` to release everything carved after it (scratch).
  std::size_t mark() const { return offset_; }
  void rewind(std::size_t mark) {
    HSEQ_CHECK(mark <= offset_, "Arena::rewind: mark " << mark << " is after the offset " << offset_);
    poison(mark, offset_);  // released: a view into it is dangling (under ASan)
    offset_ = mark;
  }
  void reset() { rewind(0); }
  std::size_t used() const { return offset_; }
  /// The largest offset reached since construction (or since `reset_high_water`).
  std::size_t high_water() const { return high_water_; }
  void reset_high_water() { high_water_ = offset_; }
  std::size_t capacity() const { return capacity_; }
  bool is_measuring() const { return measuring_; }

 private:
  // Host memory only (device memory has no ASan shadow); no-ops without ASan.
  void poison([[maybe_unused]] std::size_t from, [[maybe_unused]] std::size_t to) const {
#if defined(HSEQ_ASAN)
    if constexpr (std::is_same_v<Space, HostSpace>)
      if (!measuring_ && base_ != nullptr && to > from) ASAN_POISON_MEMORY_REGION(base_ + from, to - from);
#endif
  }
  void unpoison([[maybe_unused]] std::size_t from, [[maybe_unused]] std::size_t n) const {
#if defined(HSEQ_ASAN)
    if constexpr (std::is_same_v<Space, HostSpace>)
      if (!measuring_ && base_ != nullptr && n > 0) ASAN_UNPOISON_MEMORY_REGION(base_ + from, n);
#endif
  }

  std::byte* base_;
  std::size_t capacity_;
  std::size_t offset_ = 0;
  std::size_t high_water_ = 0;
  bool measuring_ = false;
};

/// Releases everything carved from `arena` during this scope (scratch inside a backward call).
template <class Space>
class ArenaScope {
 public:
  explicit ArenaScope(Arena<Space>& a) : arena_(a), mark_(a.mark()) {}
  ~ArenaScope() { arena_.rewind(mark_); }
  ArenaScope(ArenaScope const&) = delete;
  ArenaScope& operator=(ArenaScope const&) = delete;

 private:
  Arena<Space>& arena_;
  std::size_t mark_;
};

/// One allocation of the backend's memory, sized by a plan, with an arena over it.
template <Backend B>
class Workspace {
 public:
  using Space = typename B::Space;
  Workspace() = default;
  explicit Workspace(std::size_t bytes) { reserve(bytes); }
  Workspace(Workspace const&) = delete;
  Workspace& operator=(Workspace const&) = delete;
  ~Workspace() { release(); }

  /// Grows the allocation to at least `bytes` (never shrinks). Call before the training loop.
  void reserve(std::size_t bytes) {
    if (bytes <= capacity_) return;
    void* fresh = B::allocate(bytes);  // may throw: the old buffer stays valid
    release();
    base_ = fresh;
    capacity_ = bytes;
  }
  std::size_t capacity() const { return capacity_; }
  /// A fresh arena over the whole allocation.
  Arena<Space> arena() const { return Arena<Space>(base_, capacity_); }

 private:
  // The arenas may have poisoned parts of the buffer (ASan): clear that before the allocator
  // takes it back, so a later allocation of the same memory starts readable.
  void release() {
#if defined(HSEQ_ASAN)
    if constexpr (std::is_same_v<Space, HostSpace>)
      if (base_ != nullptr) ASAN_UNPOISON_MEMORY_REGION(base_, capacity_);
#endif
    B::deallocate(base_);
  }

  void* base_ = nullptr;
  std::size_t capacity_ = 0;
};

}  // namespace hseq
