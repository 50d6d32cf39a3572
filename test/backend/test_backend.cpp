// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cstddef>
#include <type_traits>

#include "hseq/backend/backend.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

namespace {
struct Good {
  using Space = hseq::HostSpace;
  struct Context {};
  static constexpr char const* kName = "good";
  static bool available() { return true; }
  static void* allocate(std::size_t) { return nullptr; }
  static void deallocate(void*) {}
};
struct BadSpace : Good {
  using Space = int;
};
struct NoAllocate {
  using Space = hseq::DeviceSpace;
  struct Context {};
  static constexpr char const* kName = "x";
  static bool available() { return true; }
  static void deallocate(void*) {}
};
struct WrongAllocate : Good {
  static char* allocate(std::size_t) { return nullptr; }
};
struct IntAvailable : Good {
  static int available() { return 1; }
};
struct NoDefaultContext : Good {
  struct Context {
    explicit Context(int) {}
  };
};
struct NoName {
  using Space = hseq::HostSpace;
  struct Context {};
  static bool available() { return true; }
  static void* allocate(std::size_t) { return nullptr; }
  static void deallocate(void*) {}
};
}  // namespace

TEST_CASE("backend: the concept accepts a complete policy and rejects incomplete ones") {
  static_assert(hseq::Backend<Good>);
  static_assert(!hseq::Backend<BadSpace>);
  static_assert(!hseq::Backend<NoAllocate>);
  static_assert(!hseq::Backend<WrongAllocate>);
  static_assert(!hseq::Backend<IntAvailable>);
  static_assert(!hseq::Backend<NoDefaultContext>);
  static_assert(!hseq::Backend<NoName>);
  static_assert(std::is_same_v<hseq::ContextOf<Good>, Good::Context>);
  CHECK(hseq::Backend<Good>);
  CHECK_FALSE(hseq::Backend<NoAllocate>);
}

}  // namespace HSEQ_TEST_UNIT
