// SPDX-License-Identifier: MIT
// HSEQ_TEST_UNIT: the namespace that holds everything a test file defines (helpers, aliases, test
// cases). The CPU tests compile in batches, several test files in one translation unit
// (HSEQ_TEST_UNITY, test/CMakeLists.txt): the batch's generated source defines HSEQ_TEST_UNIT
// to a name unique to each file before including it, so that two files' helpers of the same name
// (an anonymous namespace is shared by the whole translation unit) neither collide nor silently
// overload each other. Compiled on its own (HSEQ_TEST_UNITY=OFF, tools/one_test.sh) a file gets
// the name below.
//
//   #include "support/test_unit.hpp"   // the last include of a test file
//   namespace HSEQ_TEST_UNIT {
//   ...helpers and TEST_CASEs...
//   }  // namespace HSEQ_TEST_UNIT
#ifndef HSEQ_TEST_UNIT
#define HSEQ_TEST_UNIT hseq_test_unit
#endif
