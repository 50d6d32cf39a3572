// SPDX-License-Identifier: MIT
/// @file
/// @brief `Tensor<T, Backend>`: an owning, move-only, contiguous buffer in the backend's memory space.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "hseq/core/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/shape.hpp"
#include "hseq/core/tensor_view.hpp"

namespace hseq {

/// Owns `shape.numel()` elements of T allocated with `B::allocate`. Transfers between spaces are
/// explicit (see the backend's copy functions); there is no hidden host mirror.
template <class T, Backend B>
class Tensor {
 public:
  using Space = typename B::Space;

  Tensor() = default;
  explicit Tensor(Shape shape) : shape_(shape) {
    std::size_t n = 1;
    for (int i = 0; i < shape.rank(); ++i) {
      auto d = static_cast<std::size_t>(shape[i]);
      HSEQ_CHECK(d == 0 || n <= SIZE_MAX / sizeof(T) / d, "Tensor: shape " << shape << " is too large to allocate");
      n *= d;
    }
    data_ = static_cast<T*>(B::allocate(sizeof(T) * n));
  }
  Tensor(Tensor const&) = delete;
  Tensor& operator=(Tensor const&) = delete;
  Tensor(Tensor&& o) noexcept : data_(std::exchange(o.data_, nullptr)), shape_(std::exchange(o.shape_, Shape{0})) {}
  Tensor& operator=(Tensor&& o) noexcept {
    if (this != &o) {
      B::deallocate(data_);
      data_ = std::exchange(o.data_, nullptr);
      shape_ = std::exchange(o.shape_, Shape{0});
    }
    return *this;
  }
  ~Tensor() { B::deallocate(data_); }

  T* data() { return data_; }
  T const* data() const { return data_; }
  Shape const& shape() const { return shape_; }
  std::int64_t numel() const { return shape_.numel(); }
  View<T, Space> view() { return {data_, shape_}; }
  View<T const, Space> view() const { return {data_, shape_}; }
  View<T const, Space> cview() const { return {data_, shape_}; }
  operator View<T, Space>() { return view(); }
  operator View<T const, Space>() const { return cview(); }

 private:
  T* data_ = nullptr;
  Shape shape_{0};  // an empty tensor holds no elements (a rank-0 shape would count one)
};

}  // namespace hseq
