// SPDX-License-Identifier: MIT
/// @file
/// @brief The hseq exception type and the check macros whose messages name the offending values.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace hseq {

/// Every error hseq detects is thrown as an `hseq::Error`; its message names what was wrong
/// (the shapes, sizes or names involved) and where the check sits in the source. `what()` has
/// both; `message()` only the first part, for programs that show errors to people who did not
/// write the check (the hseq programs print it unless HSEQ_DEBUG=1 or --verbose).
class Error : public std::runtime_error {
 public:
  explicit Error(std::string const& what) : std::runtime_error(what), message_(what) {}
  /// `message` ("hseq: ..."), then `where` (" [check `...` failed at file:line]") in what().
  Error(std::string const& message, std::string const& where)
      : std::runtime_error(message + where), message_(message) {}
  /// The message without the check expression and source location.
  std::string const& message() const noexcept { return message_; }

 private:
  std::string message_;
};

namespace detail {
[[noreturn]] inline void throw_error(char const* cond, char const* file, int line, std::string const& msg) {
  std::ostringstream where;
  if (cond != nullptr && *cond != '\0') where << " [check `" << cond << "` failed at ";
  else where << " [at ";
  where << file << ":" << line << "]";
  throw Error("hseq: " + msg, where.str());
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
