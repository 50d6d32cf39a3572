// SPDX-License-Identifier: MIT
/// @file
/// @brief `Mat<T, Space>`: a row-major matrix with a leading dimension (strided rows), and the
/// CPU copy/add on it. A time step of a batch-first [B, T, C] buffer is the Mat [B, C] with ld T*C.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor_view.hpp"

namespace hseq::ops {

/// A row-major matrix in memory space Space: element (i, j) is data[i * ld + j].
template <class T, class Space>
struct Mat {
  T* data = nullptr;
  std::int64_t rows = 0, cols = 0, ld = 0;
  Mat() = default;
  Mat(T* d, std::int64_t r, std::int64_t c, std::int64_t l) : data(d), rows(r), cols(c), ld(l) {}
  Mat(T* d, std::int64_t r, std::int64_t c) : data(d), rows(r), cols(c), ld(c) {}
  template <class U, std::enable_if_t<std::is_same_v<U const, T> && !std::is_const_v<U>, int> = 0>
  Mat(Mat<U, Space> const& o) : data(o.data), rows(o.rows), cols(o.cols), ld(o.ld) {}
};

/// A view of any rank as the matrix [rows, cols] (all leading dimensions folded into rows).
template <class T, class Space>
Mat<T, Space> as_mat(View<T, Space> v) {
  return Mat<T, Space>(v.data, v.rows(), v.cols(), v.cols());
}

namespace detail {
template <class A, class Bm>
void check_same_dims(A const& a, Bm const& b, char const* who) {
  HSEQ_CHECK(a.rows == b.rows && a.cols == b.cols,
             who << ": [" << a.rows << ", " << a.cols << "] vs [" << b.rows << ", " << b.cols << "]");
}
}  // namespace detail

/// dst = src (element-wise over the [rows, cols] window).
template <class T>
void copy_mat(cpu::Context&, Mat<T const, HostSpace> src, Mat<T, HostSpace> dst) {
  detail::check_same_dims(src, dst, "copy_mat");
  for (std::int64_t i = 0; i < src.rows; ++i) std::copy_n(src.data + i * src.ld, src.cols, dst.data + i * dst.ld);
}

/// dst += src.
template <class T>
void add_mat(cpu::Context&, Mat<T const, HostSpace> src, Mat<T, HostSpace> dst) {
  detail::check_same_dims(src, dst, "add_mat");
  for (std::int64_t i = 0; i < src.rows; ++i) {
    T const* s = src.data + i * src.ld;
    T* d = dst.data + i * dst.ld;
    for (std::int64_t j = 0; j < src.cols; ++j) d[j] += s[j];
  }
}

}  // namespace hseq::ops

#if defined(__CUDACC__) && defined(HSEQ_ENABLE_CUDA)
#include "hseq/ops/cuda/mat.cuh"
#endif
