// SPDX-License-Identifier: MIT
/// @file
/// @brief `View<T, Space>`: a non-owning, contiguous, row-major view tagged with its memory space.
#pragma once

#include <cstdint>
#include <type_traits>

#include "hseq/core/config.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/memory_space.hpp"
#include "hseq/core/shape.hpp"

namespace hseq {

/// A pointer plus a shape; contiguous and row-major (last dimension fastest). Trivially copyable, so
/// it can be passed by value to kernels. `View<T const, S>` is the read-only form; a `View<T, S>`
/// converts to it implicitly. Views of different spaces never convert into each other.
template <class T, class Space>
struct View {
  static_assert(is_memory_space_v<Space>, "View: Space must be HostSpace or DeviceSpace");
  using value_type = std::remove_const_t<T>;
  using space = Space;

  T* data = nullptr;
  Shape shape{};

  View() = default;
  HSEQ_HOST_DEVICE View(T* p, Shape s) : data(p), shape(s) {}

  /// Read-only conversion (never across spaces).
  template <class U, std::enable_if_t<std::is_same_v<U const, T> && !std::is_const_v<U>, int> = 0>
  HSEQ_HOST_DEVICE View(View<U, Space> const& o) : data(o.data), shape(o.shape) {}

  HSEQ_HOST_DEVICE bool empty() const { return data == nullptr; }
  HSEQ_HOST_DEVICE std::int64_t numel() const { return shape.numel(); }
  HSEQ_HOST_DEVICE int rank() const { return shape.rank(); }
  HSEQ_HOST_DEVICE std::int64_t size(int i) const { return shape[i]; }
  HSEQ_HOST_DEVICE std::int64_t rows() const { return shape.rows(); }
  HSEQ_HOST_DEVICE std::int64_t cols() const { return shape.cols(); }
  HSEQ_HOST_DEVICE T& operator[](std::int64_t i) const { return data[i]; }
  HSEQ_HOST_DEVICE T* begin() const { return data; }
  HSEQ_HOST_DEVICE T* end() const { return data + numel(); }

  /// Same memory, another shape with the same number of elements.
  View reshape(Shape s) const {
    HSEQ_CHECK(s.numel() == shape.numel(),
               "reshape: cannot view " << shape << " (" << shape.numel() << " elements) as " << s << " ("
                                       << s.numel() << " elements)");
    return View(data, s);
  }
  /// Rows [begin, end) of the leading dimension.
  View slice(std::int64_t begin, std::int64_t end) const {
    HSEQ_CHECK(shape.rank() >= 1 && 0 <= begin && begin <= end && end <= shape[0],
               "slice: [" << begin << ", " << end << ") out of range for " << shape);
    std::int64_t inner = shape[0] == 0 ? 0 : shape.numel() / shape[0];
    return View(data + begin * inner, shape.with(0, end - begin));
  }
  /// Element i of the leading dimension, as a view of rank-1 less.
  View operator()(std::int64_t i) const {
    HSEQ_CHECK(shape.rank() >= 1 && 0 <= i && i < shape[0], "index " << i << " out of range for " << shape);
    std::int64_t inner = shape.numel() / shape[0];
    return View(data + i * inner, shape.without_leading());
  }

};

template <class T>
using HostView = View<T, HostSpace>;
template <class T>
using DeviceView = View<T, DeviceSpace>;

/// Throws unless `v` has exactly shape `s`; `what` names the argument in the message.
template <class T, class S>
void check_shape(View<T, S> const& v, Shape const& s, char const* what) {
  HSEQ_CHECK(v.shape == s, what << ": expected shape " << s << ", got " << v.shape);
}

}  // namespace hseq
