// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cstring>

#include "hseq/core/config.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

#define HSEQ_TEST_STR2(x) #x
#define HSEQ_TEST_STR(x) HSEQ_TEST_STR2(x)

namespace {
// HSEQ_HOST_DEVICE must be usable on a function defined in a header (it has to imply `inline`).
HSEQ_HOST_DEVICE int twice(int x) { return 2 * x; }
}  // namespace

TEST_CASE("config: version macros match the project version 0.1.0") {
  static_assert(HSEQ_VERSION_MAJOR == 0 && HSEQ_VERSION_MINOR == 1 && HSEQ_VERSION_PATCH == 0,
                "update the test together with project(VERSION) in CMakeLists.txt");
  CHECK(std::strcmp(HSEQ_TEST_STR(HSEQ_VERSION_MAJOR) "." HSEQ_TEST_STR(HSEQ_VERSION_MINOR) "." HSEQ_TEST_STR(
                        HSEQ_VERSION_PATCH),
                    "0.1.0") == 0);
}

TEST_CASE("config: HSEQ_HOST_DEVICE is plain inline in host-only builds") {
#if !defined(__CUDACC__)
  CHECK(std::strcmp(HSEQ_TEST_STR(HSEQ_HOST_DEVICE), "inline") == 0);
#endif
  CHECK(twice(21) == 42);
}

}  // namespace HSEQ_TEST_UNIT
