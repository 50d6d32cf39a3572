// SPDX-License-Identifier: MIT
// Compile-fail case (test/compile_fail/check.cmake): a compile-time hierarchy with a level that
// does not shorten (factor 1) is refused where it is written, with HierarchySpec::validate's
// message. With HSEQ_COMPILE_FAIL_CONTROL the factor is 2 and it compiles.
// expect-error: factors must be >= 2
// expect-error: Level<2, 1>
#include "hseq/hier/hierarchy.hpp"

#ifdef HSEQ_COMPILE_FAIL_CONTROL
constexpr int kFactor = 2;
#else
constexpr int kFactor = 1;
#endif

using H = hseq::hier::Hierarchy<1, 1, hseq::hier::Level<2, 4>, hseq::hier::Level<2, kFactor>>;
static_assert(H::kTotalFactor >= 4);
