// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "hseq/core/tensor_view.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::DeviceSpace;
using hseq::HostSpace;
using hseq::Shape;
using hseq::View;

// Views of different memory spaces never convert into each other; const never converts to mutable.
static_assert(!std::is_convertible_v<View<float, HostSpace>, View<float, DeviceSpace>>);
static_assert(!std::is_convertible_v<View<float, DeviceSpace>, View<float, HostSpace>>);
static_assert(!std::is_convertible_v<View<float, HostSpace>, View<float const, DeviceSpace>>);
static_assert(!std::is_convertible_v<View<float, DeviceSpace>, View<float const, HostSpace>>);
static_assert(!std::is_convertible_v<View<float const, HostSpace>, View<float, HostSpace>>);
static_assert(!std::is_convertible_v<View<float const, DeviceSpace>, View<float, DeviceSpace>>);
static_assert(!std::is_constructible_v<View<float, HostSpace>, View<float const, HostSpace>>);
static_assert(!std::is_constructible_v<View<float, DeviceSpace>, View<float, HostSpace>>);
// ... and the element type must match exactly.
static_assert(!std::is_convertible_v<View<float, HostSpace>, View<double const, HostSpace>>);
static_assert(!std::is_convertible_v<View<int, HostSpace>, View<unsigned const, HostSpace>>);
// The read-only conversion exists in both spaces.
static_assert(std::is_convertible_v<View<float, HostSpace>, View<float const, HostSpace>>);
static_assert(std::is_convertible_v<View<float, DeviceSpace>, View<float const, DeviceSpace>>);
// Views are passed to kernels by value.
static_assert(std::is_trivially_copyable_v<View<float, HostSpace>>);
static_assert(std::is_trivially_copyable_v<View<double const, DeviceSpace>>);
static_assert(std::is_same_v<View<float const, HostSpace>::value_type, float>);
static_assert(std::is_same_v<View<float, DeviceSpace>::space, DeviceSpace>);
static_assert(std::is_same_v<hseq::HostView<int>, View<int, HostSpace>>);
static_assert(std::is_same_v<hseq::DeviceView<int>, View<int, DeviceSpace>>);

namespace {
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (hseq::Error const& e) {
    return e.what();
  }
  return "<no exception>";
}
}  // namespace

TEST_CASE("tensor_view: default view is empty") {
  View<float, HostSpace> v;
  CHECK(v.empty());
  CHECK(v.data == nullptr);
  CHECK(v.rank() == 0);
}

TEST_CASE("tensor_view: sizes, element access and iteration") {
  std::vector<int> buf(24);
  std::iota(buf.begin(), buf.end(), 0);
  View<int, HostSpace> v(buf.data(), Shape{2, 3, 4});
  CHECK_FALSE(v.empty());
  CHECK(v.numel() == 24);
  CHECK(v.rank() == 3);
  CHECK(v.size(0) == 2);
  CHECK(v.size(-1) == 4);
  CHECK(v.rows() == 6);
  CHECK(v.cols() == 4);
  CHECK(v[13] == 13);
  CHECK(v.end() - v.begin() == 24);
  v[5] = -1;
  CHECK(buf[5] == -1);
  int sum = 0;
  for (int x : v) sum += x;
  CHECK(sum == 276 - 5 - 1);
}

TEST_CASE("tensor_view: reshape keeps the memory and checks the element count") {
  std::vector<float> buf(12);
  View<float, HostSpace> v(buf.data(), Shape{3, 4});
  auto r = v.reshape(Shape{2, 6});
  CHECK(r.data == buf.data());
  CHECK(r.shape == Shape{2, 6});
  CHECK(v.reshape(Shape{12}).shape == Shape{12});
  CHECK(v.reshape(Shape{2, 2, 3}).size(2) == 3);
  CHECK_THROWS_AS((void)v.reshape(Shape{5, 2}), hseq::Error);
  std::string msg = error_of([&] { (void)v.reshape(Shape{4, 2}); });
  CHECK(msg.find("[3, 4]") != std::string::npos);
  CHECK(msg.find("[4, 2]") != std::string::npos);
}

TEST_CASE("tensor_view: slice takes rows of the leading dimension") {
  std::vector<int> buf(5 * 2 * 3);
  std::iota(buf.begin(), buf.end(), 0);
  View<int, HostSpace> v(buf.data(), Shape{5, 2, 3});
  auto s = v.slice(1, 4);
  CHECK(s.shape == Shape{3, 2, 3});
  CHECK(s.data == buf.data() + 6);
  CHECK(s[0] == 6);
  CHECK(s[s.numel() - 1] == 23);
  auto e = v.slice(2, 2);
  CHECK(e.numel() == 0);
  CHECK(e.shape == Shape{0, 2, 3});
  CHECK(v.slice(0, 5).data == buf.data());
  CHECK_THROWS_AS((void)v.slice(3, 6), hseq::Error);
  CHECK_THROWS_AS((void)v.slice(-1, 2), hseq::Error);
  CHECK_THROWS_AS((void)v.slice(3, 2), hseq::Error);
  std::string msg = error_of([&] { (void)v.slice(4, 7); });
  CHECK(msg.find("[5, 2, 3]") != std::string::npos);
  CHECK(msg.find("[4, 7)") != std::string::npos);
  // Slicing a view with a zero leading extent is legal when empty.
  View<int, HostSpace> z(buf.data(), Shape{0, 3});
  CHECK(z.slice(0, 0).numel() == 0);
}

TEST_CASE("tensor_view: operator() drops the leading dimension") {
  std::vector<int> buf(4 * 3 * 2);
  std::iota(buf.begin(), buf.end(), 0);
  View<int, HostSpace> v(buf.data(), Shape{4, 3, 2});
  auto row = v(2);
  CHECK(row.shape == Shape{3, 2});
  CHECK(row.data == buf.data() + 12);
  CHECK(row(1).shape == Shape{2});
  CHECK(row(1)[1] == 2 * 6 + 1 * 2 + 1);
  CHECK(v(3)(2)[0] == 3 * 6 + 2 * 2);
  CHECK_THROWS_AS((void)v(4), hseq::Error);
  CHECK_THROWS_AS((void)v(-1), hseq::Error);
  std::string msg = error_of([&] { (void)v(9); });
  CHECK(msg.find("9") != std::string::npos);
  CHECK(msg.find("[4, 3, 2]") != std::string::npos);
  View<int, HostSpace> scalar(buf.data(), Shape{});
  CHECK_THROWS_AS((void)scalar(0), hseq::Error);
}

TEST_CASE("tensor_view: mutable view converts to a read-only one") {
  std::vector<double> buf{1, 2, 3, 4};
  View<double, HostSpace> v(buf.data(), Shape{2, 2});
  View<double const, HostSpace> c = v;
  CHECK(c.data == v.data);
  CHECK(c.shape == v.shape);
  auto read = [](View<double const, HostSpace> x) { return x[3]; };
  CHECK(read(v) == 4.0);
  // A reshape/slice of a const view stays const.
  static_assert(std::is_same_v<decltype(c.reshape(Shape{4})), View<double const, HostSpace>>);
  static_assert(std::is_same_v<decltype(c.slice(0, 1)), View<double const, HostSpace>>);
  static_assert(std::is_same_v<decltype(c[0]), double const&>);
}

TEST_CASE("tensor_view: check_shape names the argument and both shapes") {
  std::vector<float> buf(6);
  View<float, HostSpace> v(buf.data(), Shape{2, 3});
  CHECK_NOTHROW(hseq::check_shape(v, Shape{2, 3}, "weight"));
  std::string msg = error_of([&] { hseq::check_shape(v, Shape{3, 2}, "weight"); });
  CHECK(msg.find("weight") != std::string::npos);
  CHECK(msg.find("[3, 2]") != std::string::npos);
  CHECK(msg.find("[2, 3]") != std::string::npos);
}

}  // namespace HSEQ_TEST_UNIT
