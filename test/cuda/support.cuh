// SPDX-License-Identifier: MIT
/// @file
/// @brief Helpers of the CUDA op parity tests (test/cuda/ops/*.cu): host <-> device copies of tensors and
/// strided matrices, Philox fills, bit comparisons, and the NMSE checks
///
///   nmse(got, want) = sum (got - want)^2 / max(sum want^2, tiny)   (in double)
///
/// `CHECK_NMSE(got, want, tol)` / `REQUIRE_NMSE(got, want, tol)` fail with the value in the
/// message (run the executable with `-s` to see the values of passing checks as well).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>

#include "hseq/backend/cpu.hpp"
#include "hseq/backend/cuda.hpp"
#include "hseq/core/rng.hpp"
#include "hseq/core/shape.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/ops/mat.hpp"

namespace hseq::test_cuda {

template <class T>
using HostTensor = Tensor<T, cpu>;
template <class T>
using DeviceTensor = Tensor<T, cuda>;

template <class T>
T nan_v() {
  return std::numeric_limits<T>::quiet_NaN();
}

// ---------------------------------------------------------------------------------------------
// Host <-> device copies (blocking)
// ---------------------------------------------------------------------------------------------

/// A device tensor with the shape and contents of host view `h`.
template <class T>
DeviceTensor<std::remove_const_t<T>> to_device(cuda::Context& ctx, View<T, HostSpace> h) {
  using U = std::remove_const_t<T>;
  DeviceTensor<U> d(h.shape);
  cuda::upload<U>(ctx, d.data(), h.data, std::size_t(h.numel()));
  return d;
}
template <class T>
DeviceTensor<T> to_device(cuda::Context& ctx, HostTensor<T> const& h) {
  return to_device(ctx, h.cview());
}

/// A host tensor with the shape and contents of device view `d` (waits for the context's stream).
template <class T>
HostTensor<std::remove_const_t<T>> to_host(cuda::Context& ctx, View<T, DeviceSpace> d) {
  using U = std::remove_const_t<T>;
  HostTensor<U> h(d.shape);
  cuda::download<U>(ctx, h.data(), d.data, std::size_t(d.numel()));
  return h;
}
template <class T>
HostTensor<T> to_host(cuda::Context& ctx, DeviceTensor<T> const& d) {
  return to_host(ctx, d.cview());
}

/// Overwrites device memory `d` with host `h` (same number of elements).
template <class T>
void upload_into(cuda::Context& ctx, HostTensor<T> const& h, DeviceTensor<T>& d) {
  REQUIRE(h.numel() == d.numel());
  cuda::upload<T>(ctx, d.data(), h.data(), std::size_t(h.numel()));
}

/// A host copy of a host tensor.
template <class T>
HostTensor<T> clone(HostTensor<T> const& h) {
  HostTensor<T> c(h.shape());
  if (h.numel()) std::memcpy(c.data(), h.data(), sizeof(T) * std::size_t(h.numel()));
  return c;
}

// ---------------------------------------------------------------------------------------------
// Fills (Philox: reproducible, independent of the platform)
// ---------------------------------------------------------------------------------------------

inline constexpr std::uint64_t kFillStream = 0x7e57;

/// v[i] = shift + scale * N(0, 1) drawn from (seed, kFillStream, i).
template <class T>
void fill_normal(View<T, HostSpace> v, std::uint64_t seed, double scale = 1.0, double shift = 0.0) {
  for (std::int64_t i = 0; i < v.numel(); ++i) v[i] = T(shift + scale * philox_normal(seed, kFillStream, std::uint64_t(i)));
}
/// v[i] uniform in [lo, hi) drawn from (seed, kFillStream, i).
template <class T>
void fill_uniform(View<T, HostSpace> v, std::uint64_t seed, double lo, double hi) {
  for (std::int64_t i = 0; i < v.numel(); ++i)
    v[i] = T(lo + (hi - lo) * philox_uniform(seed, kFillStream, std::uint64_t(i)));
}
template <class T>
void fill_value(View<T, HostSpace> v, T value) {
  std::fill(v.begin(), v.end(), value);
}

template <class T>
HostTensor<T> random_normal(Shape s, std::uint64_t seed, double scale = 1.0, double shift = 0.0) {
  HostTensor<T> t(s);
  fill_normal(t.view(), seed, scale, shift);
  return t;
}
template <class T>
HostTensor<T> random_uniform(Shape s, std::uint64_t seed, double lo, double hi) {
  HostTensor<T> t(s);
  fill_uniform(t.view(), seed, lo, hi);
  return t;
}
template <class T>
HostTensor<T> filled(Shape s, T value) {
  HostTensor<T> t(s);
  fill_value(t.view(), value);
  return t;
}

// ---------------------------------------------------------------------------------------------
// Comparisons
// ---------------------------------------------------------------------------------------------

/// sum (got - want)^2 / max(sum want^2, tiny), in double; +inf when the sizes differ, NaN when
/// `got` holds a NaN (so `nmse <= tol` fails).
template <class T>
double nmse(T const* got, T const* want, std::int64_t n) {
  double num = 0, den = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    double g = double(got[i]), w = double(want[i]);
    num += (g - w) * (g - w);
    den += w * w;
  }
  return num / std::max(den, std::numeric_limits<double>::min());
}
template <class T, class U>
double nmse(View<T, HostSpace> got, View<U, HostSpace> want) {
  static_assert(std::is_same_v<std::remove_const_t<T>, std::remove_const_t<U>>, "nmse: element types differ");
  if (got.numel() != want.numel()) return std::numeric_limits<double>::infinity();
  return nmse<std::remove_const_t<T>>(got.data, want.data, got.numel());
}
template <class T>
double nmse(HostTensor<T> const& got, HostTensor<T> const& want) {
  return nmse(got.cview(), want.cview());
}

/// Elements whose bit patterns differ (a NaN equals a NaN of the same payload).
template <class T>
std::int64_t bit_mismatches(T const* a, T const* b, std::int64_t n) {
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < n; ++i) bad += std::memcmp(a + i, b + i, sizeof(T)) != 0;
  return bad;
}
template <class T>
std::int64_t bit_mismatches(HostTensor<T> const& a, HostTensor<T> const& b) {
  if (a.numel() != b.numel()) return std::max(a.numel(), b.numel()) + 1;
  return bit_mismatches(a.data(), b.data(), a.numel());
}

/// Number of elements that are not exactly zero.
template <class T>
std::int64_t nonzeros(T const* a, std::int64_t n) {
  std::int64_t c = 0;
  for (std::int64_t i = 0; i < n; ++i) c += !(a[i] == T(0));
  return c;
}

/// Relative difference |got - want| / max(|want|, tiny) of two scalars.
inline double rel_diff(double got, double want) {
  return std::abs(got - want) / std::max(std::abs(want), std::numeric_limits<double>::min());
}

/// Whether the NMSE values of passing checks should be printed too (HSEQ_TEST_SHOW_NMSE=1).
inline bool show_nmse() {
  static bool const on = [] {
    char const* e = std::getenv("HSEQ_TEST_SHOW_NMSE");
    return e != nullptr && std::strcmp(e, "1") == 0;
  }();
  return on;
}

inline std::string nmse_message(char const* got, char const* want, double value, double tol) {
  std::ostringstream os;
  os << "nmse(" << got << ", " << want << ") = " << value << " (tolerance " << tol << ")";
  return os.str();
}

// ---------------------------------------------------------------------------------------------
// Strided matrices: `batch` row-major [rows, cols] windows with leading dimension ld, the i-th at
// offset i * stride of one buffer. Padding and gaps hold whatever the buffer was filled with
// (NaN by default: a kernel that reads them poisons its result; one that writes them is caught by
// `outside_bit_mismatches`).
// ---------------------------------------------------------------------------------------------

template <class T, class B>
struct Strided {
  using Space = typename B::Space;
  Tensor<T, B> buf;
  std::int64_t rows = 0, cols = 0, ld = 0, batch = 1, stride = 0;

  Strided() = default;
  Strided(std::int64_t r, std::int64_t c, std::int64_t l, std::int64_t nbatch = 1, std::int64_t s = 0)
      : rows(r), cols(c), ld(l), batch(nbatch), stride(s > 0 ? s : std::max<std::int64_t>(r * l, 1)) {
    REQUIRE(ld >= cols);
    REQUIRE(stride >= rows * ld);
    buf = Tensor<T, B>(Shape{std::max<std::int64_t>(batch * stride, 1)});
  }
  std::int64_t size() const { return buf.numel(); }
  ops::Mat<T, Space> mat(std::int64_t i = 0) { return {buf.data() + i * stride, rows, cols, ld}; }
  ops::Mat<T const, Space> cmat(std::int64_t i = 0) const { return {buf.data() + i * stride, rows, cols, ld}; }
  bool inside(std::int64_t idx) const {
    std::int64_t q = idx / stride, r = idx % stride;
    return q < batch && r / ld < rows && r % ld < cols;
  }
};
template <class T>
using HostMat = Strided<T, cpu>;
template <class T>
using DeviceMat = Strided<T, cuda>;

/// A host strided matrix whose windows are N(0, scale^2) and whose padding/gaps are `pad`.
template <class T>
HostMat<T> random_mat(std::int64_t rows, std::int64_t cols, std::int64_t ld, std::uint64_t seed, double scale = 1.0,
                      std::int64_t batch = 1, std::int64_t stride = 0, T pad = nan_v<T>()) {
  HostMat<T> m(rows, cols, ld, batch, stride);
  for (std::int64_t i = 0; i < m.size(); ++i)
    m.buf.data()[i] = m.inside(i) ? T(scale * philox_normal(seed, kFillStream, std::uint64_t(i))) : pad;
  return m;
}
/// Sets every window element of `m` to `value` (padding untouched).
template <class T>
void fill_window(HostMat<T>& m, T value) {
  for (std::int64_t i = 0; i < m.size(); ++i)
    if (m.inside(i)) m.buf.data()[i] = value;
}

template <class T>
HostMat<T> clone(HostMat<T> const& h) {
  HostMat<T> c(h.rows, h.cols, h.ld, h.batch, h.stride);
  std::memcpy(c.buf.data(), h.buf.data(), sizeof(T) * std::size_t(h.size()));
  return c;
}
template <class T>
DeviceMat<T> to_device(cuda::Context& ctx, HostMat<T> const& h) {
  DeviceMat<T> d(h.rows, h.cols, h.ld, h.batch, h.stride);
  cuda::upload<T>(ctx, d.buf.data(), h.buf.data(), std::size_t(h.size()));
  return d;
}
template <class T>
HostMat<T> to_host(cuda::Context& ctx, DeviceMat<T> const& d) {
  HostMat<T> h(d.rows, d.cols, d.ld, d.batch, d.stride);
  cuda::download<T>(ctx, h.buf.data(), d.buf.data(), std::size_t(d.size()));
  return h;
}

/// The window elements of `m`, packed: [batch, rows, cols].
template <class T>
HostTensor<T> window(HostMat<T> const& m) {
  HostTensor<T> w(Shape{m.batch, m.rows, m.cols});
  std::int64_t k = 0;
  for (std::int64_t i = 0; i < m.size(); ++i)
    if (m.inside(i)) w.data()[k++] = m.buf.data()[i];
  return w;
}
/// Elements outside the windows (padding, gaps) whose bits differ between a and b.
template <class T>
std::int64_t outside_bit_mismatches(HostMat<T> const& a, HostMat<T> const& b) {
  REQUIRE(a.size() == b.size());
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < a.size(); ++i)
    if (!a.inside(i)) bad += std::memcmp(a.buf.data() + i, b.buf.data() + i, sizeof(T)) != 0;
  return bad;
}

}  // namespace hseq::test_cuda

#define HSEQ_TEST_NMSE_IMPL_(assert_macro, got, want, tol)                                            \
  do {                                                                                                \
    double const hseq_nmse_value_ = ::hseq::test_cuda::nmse((got), (want));                          \
    double const hseq_nmse_tol_ = (tol);                                                              \
    std::string const hseq_nmse_msg_ =                                                                \
        ::hseq::test_cuda::nmse_message(#got, #want, hseq_nmse_value_, hseq_nmse_tol_);               \
    if (::hseq::test_cuda::show_nmse()) MESSAGE(hseq_nmse_msg_);                                      \
    assert_macro(hseq_nmse_value_ <= hseq_nmse_tol_, hseq_nmse_msg_);                                 \
  } while (0)

/// Non-fatal: nmse(got, want) <= tol, printing the value when it fails.
#define CHECK_NMSE(got, want, tol) HSEQ_TEST_NMSE_IMPL_(CHECK_MESSAGE, got, want, tol)
/// Fatal: nmse(got, want) <= tol, printing the value when it fails.
#define REQUIRE_NMSE(got, want, tol) HSEQ_TEST_NMSE_IMPL_(REQUIRE_MESSAGE, got, want, tol)
