// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cstdint>
#include <type_traits>
#include <utility>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/tensor.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::HostSpace;
using hseq::Shape;
using hseq::Tensor;
using hseq::View;
using FTensor = Tensor<float, hseq::cpu>;

static_assert(!std::is_copy_constructible_v<FTensor>);
static_assert(!std::is_copy_assignable_v<FTensor>);
static_assert(std::is_nothrow_move_constructible_v<FTensor>);
static_assert(std::is_nothrow_move_assignable_v<FTensor>);
static_assert(std::is_same_v<FTensor::Space, HostSpace>);
static_assert(std::is_convertible_v<FTensor&, View<float, HostSpace>>);
static_assert(std::is_convertible_v<FTensor const&, View<float const, HostSpace>>);
static_assert(!std::is_convertible_v<FTensor const&, View<float, HostSpace>>, "a const tensor gives read-only views");
static_assert(!std::is_convertible_v<FTensor&, View<float, hseq::DeviceSpace>>);
static_assert(std::is_same_v<decltype(std::declval<FTensor const&>().view()), View<float const, HostSpace>>);

TEST_CASE("tensor: allocation, shape and numel") {
  FTensor t(Shape{3, 5});
  CHECK(t.shape() == Shape{3, 5});
  CHECK(t.numel() == 15);
  REQUIRE(t.data() != nullptr);
  CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % hseq::cpu::kAlignment == 0);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = float(i);  // every element is writable
  CHECK(t.data()[14] == 14.0f);

  Tensor<double, hseq::cpu> d(Shape{2, 3, 4});
  CHECK(d.numel() == 24);
  CHECK(reinterpret_cast<std::uintptr_t>(d.data()) % 256 == 0);
}

TEST_CASE("tensor: zero elements allocate nothing") {
  FTensor t(Shape{0, 7});
  CHECK(t.numel() == 0);
  CHECK(t.view().numel() == 0);
}

TEST_CASE("tensor: views alias the storage") {
  FTensor t(Shape{2, 3});
  View<float, HostSpace> v = t.view();
  CHECK(v.data == t.data());
  CHECK(v.shape == t.shape());
  v[4] = 7.5f;
  CHECK(t.data()[4] == 7.5f);
  FTensor const& ct = t;
  View<float const, HostSpace> c = ct.view();
  CHECK(c.data == t.data());
  CHECK(c[4] == 7.5f);
  CHECK(t.cview().data == t.data());
  CHECK(t.cview().shape == Shape{2, 3});
  View<float, HostSpace> implicit = t;  // implicit conversion
  CHECK(implicit.data == t.data());
  View<float const, HostSpace> implicit_c = ct;
  CHECK(implicit_c.shape == Shape{2, 3});
  CHECK(t.view().reshape(Shape{6})[4] == 7.5f);
}

TEST_CASE("tensor: move construction transfers ownership") {
  FTensor a(Shape{4, 4});
  float* p = a.data();
  a.data()[3] = 3.0f;
  FTensor b(std::move(a));
  CHECK(b.data() == p);
  CHECK(b.shape() == Shape{4, 4});
  CHECK(b.data()[3] == 3.0f);
  CHECK(a.data() == nullptr);  // NOLINT(bugprone-use-after-move): the moved-from state is specified here
}

TEST_CASE("tensor: move assignment transfers ownership and releases the old buffer") {
  FTensor a(Shape{8});
  FTensor b(Shape{2, 2});
  float* pa = a.data();
  a.data()[7] = 1.25f;
  b = std::move(a);
  CHECK(b.data() == pa);
  CHECK(b.shape() == Shape{8});
  CHECK(b.numel() == 8);
  CHECK(b.data()[7] == 1.25f);
  CHECK(a.data() == nullptr);  // NOLINT(bugprone-use-after-move)

  // Self-move leaves the tensor intact.
  FTensor& self = b;
  b = std::move(self);
  CHECK(b.data() == pa);
  CHECK(b.data()[7] == 1.25f);

  // Assigning into a default-constructed tensor and back out again.
  FTensor c;
  CHECK(c.data() == nullptr);
  c = std::move(b);
  CHECK(c.data() == pa);
  CHECK(c.shape() == Shape{8});
}

TEST_CASE("tensor: sizes that overflow are refused; empty and moved-from tensors hold no elements") {
  using TF = hseq::Tensor<float, hseq::cpu>;
  CHECK_THROWS_WITH_AS(TF(hseq::Shape{std::int64_t(1) << 31, std::int64_t(1) << 31, 8}), doctest::Contains("too large"),
                       hseq::Error);
  CHECK_THROWS_AS(hseq::cpu::allocate(SIZE_MAX - 10), hseq::Error);
  TF empty;
  CHECK(empty.numel() == 0);
  TF a(hseq::Shape{2, 4});
  TF b(std::move(a));
  CHECK(a.numel() == 0);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  CHECK(a.data() == nullptr);
  CHECK(b.numel() == 8);
}

}  // namespace HSEQ_TEST_UNIT
