// SPDX-License-Identifier: MIT
/// @file
/// @brief The hseq exception type and the check macros whose messages name the offending values.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace hseq {

/// Every error hseq detects is thrown as an `hseq::Error`; its message names what was wrong
/// (the shapes, sizes or names involved) and where the check sits in the source.
class Error : public std::runtime_error {
 public:
  explicit Error(std::string const& what) : std::runtime_error(what) {}
};

namespace detail {
[[noreturn]] inline void throw_error(char const* cond, char const* file, int line, std::string const& msg) {
  std::ostringstream os;
  os << "hseq: " << msg;
  if (cond != nullptr && *cond != '\0') os << " [check `" << cond << "` failed at ";
  else os << " [at ";
  os << file << ":" << line << "]";
  throw Error(os.str());
}
}  // namespace detail

}  // namespace hseq

/// Throws hseq::Error with a streamed message when `cond` is false:
/// `HSEQ_CHECK(x.shape == y.shape, "add: x " << x.shape << " vs y " << y.shape);`
#define HSEQ_CHECK(cond, ...)                                                  \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::ostringstream hseq_check_os_;                                       \
      hseq_check_os_ << __VA_ARGS__;                                                   \
      ::hseq::detail::throw_error(#cond, __FILE__, __LINE__, hseq_check_os_.str()); \
    }                                                                          \
  } while (0)

/// Throws hseq::Error unconditionally with a streamed message.
#define HSEQ_FAIL(...)                                                         \
  do {                                                                         \
    std::ostringstream hseq_check_os_;                                         \
    hseq_check_os_ << __VA_ARGS__;                                                     \
    ::hseq::detail::throw_error("", __FILE__, __LINE__, hseq_check_os_.str()); \
  } while (0)
