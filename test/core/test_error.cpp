// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <type_traits>

#include "hseq/core/error.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

namespace {
std::string message_of(void (*f)()) {
  try {
    f();
  } catch (hseq::Error const& e) {
    return e.what();
  }
  return "<no exception>";
}
}  // namespace

TEST_CASE("error: hseq::Error is a std::runtime_error") {
  static_assert(std::is_base_of_v<std::runtime_error, hseq::Error>);
  static_assert(!std::is_convertible_v<std::string, hseq::Error>, "the constructor is explicit");
  hseq::Error e("boom");
  CHECK(std::string(e.what()) == "boom");
  bool caught = false;
  try {
    throw hseq::Error("x");
  } catch (std::runtime_error const& r) {
    caught = std::string(r.what()) == "x";
  }
  CHECK(caught);
}

TEST_CASE("error: HSEQ_CHECK message contains the streamed values, the condition and the location") {
  std::string msg = message_of([] {
    int rows = 7;
    double scale = 2.5;
    HSEQ_CHECK(rows == 3, "rows " << rows << " scale " << scale << " name '" << std::string("abc") << "'");
  });
  CHECK(msg.find("rows 7 scale 2.5 name 'abc'") != std::string::npos);
  CHECK(msg.find("rows == 3") != std::string::npos);
  CHECK(msg.find("test_error.cpp") != std::string::npos);
  CHECK(msg.rfind("hseq: ", 0) == 0);
}

TEST_CASE("error: HSEQ_CHECK does not throw and does not evaluate the message when the condition holds") {
  int cond_evals = 0, msg_evals = 0;
  auto cond = [&] {
    ++cond_evals;
    return true;
  };
  auto msg = [&] {
    ++msg_evals;
    return 1;
  };
  CHECK_NOTHROW(HSEQ_CHECK(cond(), "never " << msg()));
  CHECK(cond_evals == 1);
  CHECK(msg_evals == 0);
}

TEST_CASE("error: HSEQ_CHECK evaluates the condition once when it fails") {
  int evals = 0;
  auto cond = [&] {
    ++evals;
    return false;
  };
  CHECK_THROWS_AS(HSEQ_CHECK(cond(), "x"), hseq::Error);
  CHECK(evals == 1);
}

TEST_CASE("error: HSEQ_CHECK and HSEQ_FAIL are single statements") {
  // An unbraced if/else must compile and pick the right branch (do { } while (0) form).
  int taken = 0;
  if (taken == 0)
    HSEQ_CHECK(true, "x");
  else
    taken = 2;
  CHECK(taken == 0);
  bool threw = false;
  try {
    if (taken == 1)
      taken = 3;
    else
      HSEQ_FAIL("fail " << 42);
  } catch (hseq::Error const& e) {
    threw = std::string(e.what()).find("fail 42") != std::string::npos;
  }
  CHECK(threw);
}

TEST_CASE("error: HSEQ_FAIL message names the values and the location but no condition") {
  std::string msg = message_of([] { HSEQ_FAIL("unsupported kind " << 3); });
  CHECK(msg.find("unsupported kind 3") != std::string::npos);
  CHECK(msg.find("test_error.cpp") != std::string::npos);
  CHECK(msg.find("check `") == std::string::npos);
}

TEST_CASE("error: message() is what() without the check expression and the location") {
  hseq::Error plain("boom");
  CHECK(plain.message() == "boom");  // one-argument errors: the whole text
  std::string what, message;
  try {
    int rows = 7;
    HSEQ_CHECK(rows == 3, "rows " << rows);
  } catch (hseq::Error const& e) {
    what = e.what();
    message = e.message();
  }
  CHECK(message == "hseq: rows 7");
  CHECK(what.rfind(message, 0) == 0);  // what() starts with the message
  CHECK(what.find("rows == 3") != std::string::npos);
  CHECK(message.find("test_error.cpp") == std::string::npos);
  try {
    HSEQ_FAIL("unsupported kind " << 3);
  } catch (hseq::Error const& e) {
    CHECK(e.message() == "hseq: unsupported kind 3");
    CHECK(std::string(e.what()).find("test_error.cpp") != std::string::npos);
  }
}

}  // namespace HSEQ_TEST_UNIT
