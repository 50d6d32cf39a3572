// SPDX-License-Identifier: MIT
/// @file
/// @brief Test support: the message of the hseq::Error a call throws, for checks that an error
/// names what is wrong.
#pragma once

#include <string>

#include "hseq/core/error.hpp"

namespace hseq::test {

/// what() of the hseq::Error that `f()` throws; "" when it throws none (any other exception
/// propagates, failing the test case).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (hseq::Error const& e) {
    return e.what();
  }
  return "";
}

/// Whether `s` contains `part`.
inline bool contains(std::string const& s, std::string const& part) { return s.find(part) != std::string::npos; }

}  // namespace hseq::test
