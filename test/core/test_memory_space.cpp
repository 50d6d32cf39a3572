// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <string>

#include "hseq/core/memory_space.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

TEST_CASE("memory_space: exactly HostSpace and DeviceSpace are memory spaces") {
  static_assert(hseq::is_memory_space_v<hseq::HostSpace>);
  static_assert(hseq::is_memory_space_v<hseq::DeviceSpace>);
  static_assert(!hseq::is_memory_space_v<int>);
  static_assert(!hseq::is_memory_space_v<void>);
  static_assert(!hseq::is_memory_space_v<hseq::HostSpace*>);
  static_assert(!std::is_same_v<hseq::HostSpace, hseq::DeviceSpace>);
  CHECK(hseq::is_memory_space_v<hseq::HostSpace>);
  CHECK_FALSE(hseq::is_memory_space_v<double>);
}

TEST_CASE("memory_space: names") {
  CHECK(std::string(hseq::HostSpace::kName) == "host");
  CHECK(std::string(hseq::DeviceSpace::kName) == "device");
}

}  // namespace HSEQ_TEST_UNIT
