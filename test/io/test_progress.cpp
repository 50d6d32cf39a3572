// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cstdio>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>

#if !defined(_WIN32)
#include <unistd.h>
#endif

#include "hseq/core/error.hpp"
#include "hseq/io/progress.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::io::Progress;

namespace {

/// A clock the test moves by hand.
struct FakeClock {
  double t = 0.0;
  auto fn() {
    return [this] { return t; };
  }
};

std::size_t count_of(std::string const& s, std::string const& part) {
  std::size_t n = 0;
  for (std::size_t p = s.find(part); p != std::string::npos; p = s.find(part, p + part.size())) ++n;
  return n;
}

}  // namespace

TEST_CASE("progress: durations and rates are formatted for people") {
  using hseq::io::format_duration;
  using hseq::io::format_si;
  CHECK(format_duration(0) == "0s");
  CHECK(format_duration(12) == "12s");
  CHECK(format_duration(59.4) == "59s");
  CHECK(format_duration(59.6) == "1m00s");
  CHECK(format_duration(245) == "4m05s");
  CHECK(format_duration(3723) == "1h02m03s");
  CHECK(format_duration(100 * 3600 + 5) == "100h00m05s");
  CHECK(format_duration(-1) == "?");
  CHECK(format_duration(std::numeric_limits<double>::quiet_NaN()) == "?");
  CHECK(format_duration(std::numeric_limits<double>::infinity()) == "?");

  CHECK(format_si(0) == "0");
  CHECK(format_si(512) == "512");
  CHECK(format_si(999.4) == "999");
  CHECK(format_si(999.7) == "1.0k");
  CHECK(format_si(12345) == "12.3k");
  CHECK(format_si(999949) == "999.9k");
  CHECK(format_si(999960) == "1.0M");
  CHECK(format_si(4.56e6) == "4.6M");
  CHECK(format_si(2.5e9) == "2.5G");
  CHECK(format_si(-12345) == "-12.3k");
  CHECK(format_si(std::numeric_limits<double>::quiet_NaN()) == "nan");
}

TEST_CASE("progress: plain mode prints whole lines at most every plain_interval_s") {
  std::ostringstream os;
  FakeClock clock;
  {
    Progress p(1000, os, false);
    CHECK_FALSE(p.interactive());
    CHECK(p.plain_interval_s() == 10.0);
    p.set_clock(clock.fn());

    clock.t = 5;  // 10 steps in 5 s: 2 steps/s, 990 steps left -> 495 s
    p.update(10, 2.5, 3.606737602, 12345);
    clock.t = 9;  // 4 s after the last line: held back
    p.update(18, 2.4, 3.46, 12000);
    clock.t = 15;  // 10 s after the last line: printed; 970 left at 2 steps/s -> 485 s
    p.update(30, 2.25, 3.2460, 11960);
    p.message("saved checkpoint");
    clock.t = 3725;  // 999 steps in 3725 s: 1 step left -> 3.73 s
    p.update(999, 1.0, 1.4427, 998.4);
    clock.t = 3726;  // the final step always prints, even 1 s later
    p.update(1000, 0.99999, 1.44268, 1.5e6);
    p.finish();
    p.finish();  // idempotent
  }
  std::string const want =
      "step 10/1000 | loss 2.5000 | bpc 3.6067 | 12.3k tok/s | elapsed 5s | eta 8m15s\n"
      "step 30/1000 | loss 2.2500 | bpc 3.2460 | 12.0k tok/s | elapsed 15s | eta 8m05s\n"
      "saved checkpoint\n"
      "step 999/1000 | loss 1.0000 | bpc 1.4427 | 998 tok/s | elapsed 1h02m05s | eta 4s\n"
      "step 1000/1000 | loss 1.0000 | bpc 1.4427 | 1.5M tok/s | elapsed 1h02m06s | eta 0s\n";
  CHECK(os.str() == want);
  CHECK(os.str().find('\r') == std::string::npos);
  CHECK(os.str().find('\x1b') == std::string::npos);
}

TEST_CASE("progress: plain interval is settable and finish prints a held-back update") {
  std::ostringstream os;
  FakeClock clock;
  Progress p(100, os, false);
  p.set_clock(clock.fn());
  p.set_plain_interval(60);
  for (int step = 1; step <= 40; ++step) {
    clock.t = step * 2.0;  // 2 s per step: 30 steps per minute
    p.update(step, 1.0, 1.5, 100);
  }
  // Printed at t = 2 (the first update), 62 and ... the next would be t = 122 > 80.
  CHECK(count_of(os.str(), "\n") == 2);
  CHECK(os.str().find("step 1/100 ") != std::string::npos);
  CHECK(os.str().find("step 31/100 | loss 1.0000 | bpc 1.5000 | 100 tok/s | elapsed 1m02s | eta 2m18s\n") !=
        std::string::npos);  // 69 steps left at 31 steps / 62 s -> 138 s
  p.finish();
  CHECK(count_of(os.str(), "\n") == 3);
  CHECK(os.str().find("step 40/100 | loss 1.0000 | bpc 1.5000 | 100 tok/s | elapsed 1m20s | eta 2m00s\n") !=
        std::string::npos);  // 60 left at 0.5 steps/s -> 120 s
  p.finish();
  CHECK(count_of(os.str(), "\n") == 3);
}

TEST_CASE("progress: interactive mode redraws one line, throttled to 10 per second") {
  std::ostringstream os;
  FakeClock clock;
  {
    Progress p(100, os, true);
    CHECK(p.interactive());
    p.set_clock(clock.fn());
    clock.t = 0.4;  // 1 step in 0.4 s, 99 left -> 39.6 s
    p.update(1, 4.0, 5.0, 2500);
    clock.t = 0.45;  // 0.05 s later: held back
    p.update(2, 3.9, 4.9, 2500);
    clock.t = 0.55;  // 0.15 s after the last draw: 3 steps in 0.55 s, 97 left -> 17.8 s
    p.update(3, 3.8, 4.8, 2600);
    p.message("eval: bpc 4.5");
    clock.t = 0.56;  // right after a message the line is redrawn at once: 96 * 0.56 / 4 = 13.4 s
    p.update(4, 3.7, 4.7, 2700);
    clock.t = 0.57;  // held back, printed by finish: 95 * 0.57 / 5 = 10.8 s
    p.update(5, 3.6, 4.6, 2800);
    p.finish();
  }
  std::string const want =
      "\rstep 1/100 | loss 4.0000 | bpc 5.0000 | 2.5k tok/s | elapsed 0s | eta 40s\x1b[K"
      "\rstep 3/100 | loss 3.8000 | bpc 4.8000 | 2.6k tok/s | elapsed 1s | eta 18s\x1b[K"
      "\n"
      "eval: bpc 4.5\n"
      "\rstep 4/100 | loss 3.7000 | bpc 4.7000 | 2.7k tok/s | elapsed 1s | eta 13s\x1b[K"
      "\rstep 5/100 | loss 3.6000 | bpc 4.6000 | 2.8k tok/s | elapsed 1s | eta 11s\x1b[K"
      "\n";
  CHECK(os.str() == want);
}

TEST_CASE("progress: interactive mode always draws the final step") {
  std::ostringstream os;
  FakeClock clock;
  Progress p(3, os, true);
  p.set_clock(clock.fn());
  clock.t = 1.0;
  p.update(1, 1, 1, 10);
  clock.t = 1.01;
  p.update(2, 1, 1, 10);  // held back
  clock.t = 1.02;
  p.update(3, 1, 1, 10);  // final: drawn
  CHECK(count_of(os.str(), "\r") == 2);
  CHECK(os.str().find("step 2/3") == std::string::npos);
  CHECK(os.str().find("\rstep 3/3 | loss 1.0000 | bpc 1.0000 | 10 tok/s | elapsed 1s | eta 0s\x1b[K") !=
        std::string::npos);
  CHECK(os.str().back() != '\n');
  p.finish();
  CHECK(os.str().back() == '\n');
  CHECK(count_of(os.str(), "\r") == 2);
}

TEST_CASE("progress: resumed runs count the rate from the initial step") {
  std::ostringstream os;
  FakeClock clock;
  clock.t = 100.0;  // any clock origin
  Progress p(1000, os, false);
  p.set_clock(clock.fn());
  p.set_initial_step(500);
  clock.t = 110.0;  // 100 steps in 10 s, 400 left -> 40 s
  p.update(600, 1.25, 1.8, 51200);
  CHECK(os.str() == "step 600/1000 | loss 1.2500 | bpc 1.8000 | 51.2k tok/s | elapsed 10s | eta 40s\n");
  // No step done yet: the ETA is unknown.
  CHECK(p.line(500, 1, 1, 0, 110.0).find("eta ?") != std::string::npos);
}

TEST_CASE("progress: an update's detail (loss terms, validation) goes after the bpc field, and only into its line") {
  std::ostringstream os;
  FakeClock clock;
  Progress p(100, os, false);
  p.set_clock(clock.fn());
  p.set_plain_interval(0);
  clock.t = 10.0;
  p.update(10, 2.5, std::numeric_limits<double>::quiet_NaN(), 1000, "iem 2.5000 | val iem 2.6000");
  clock.t = 20.0;
  p.update(20, 1.0, 1.5, 1000);
  CHECK(os.str() ==
        "step 10/100 | loss 2.5000 | bpc nan | iem 2.5000 | val iem 2.6000 | 1.0k tok/s | elapsed 10s | eta 1m30s\n"
        "step 20/100 | loss 1.0000 | bpc 1.5000 | 1.0k tok/s | elapsed 20s | eta 1m20s\n");
  CHECK(p.line(10, 1, 1, 0, 10.0, "ce 1.0000") == p.line(10, 1, 1, 0, 10.0).insert(38, " | ce 1.0000"));
}

TEST_CASE("progress: the destructor ends the line; non-terminal streams are plain") {
  std::ostringstream os;
  {
    Progress p(10, os, true);
    p.update(1, 1, 1, 1);
  }
  CHECK(os.str().front() == '\r');
  CHECK(os.str().back() == '\n');

  std::ostringstream plain;
  Progress q(10, plain);
  CHECK_FALSE(q.interactive());
#if !defined(_WIN32)
  Progress e(10, std::cerr);
  CHECK(e.interactive() == (isatty(fileno(stderr)) != 0));
  Progress o(10, std::cout);
  CHECK(o.interactive() == (isatty(fileno(stdout)) != 0));
#endif
  CHECK_THROWS_AS(Progress(-1, os, false), hseq::Error);
}

TEST_CASE("progress: a total of 0 means unknown: throttled, no ETA") {
  std::ostringstream os;
  FakeClock clock;
  Progress p(0, os, false);
  p.set_clock(clock.fn());
  for (int step = 1; step <= 30; ++step) {
    clock.t = step;
    p.update(step, 2, 3, 40);
  }
  CHECK(os.str() ==
        "step 1 | loss 2.0000 | bpc 3.0000 | 40 tok/s | elapsed 1s | eta ?\n"
        "step 11 | loss 2.0000 | bpc 3.0000 | 40 tok/s | elapsed 11s | eta ?\n"
        "step 21 | loss 2.0000 | bpc 3.0000 | 40 tok/s | elapsed 21s | eta ?\n");
  p.finish();
  CHECK(os.str().substr(os.str().rfind("step ")) ==
        "step 30 | loss 2.0000 | bpc 3.0000 | 40 tok/s | elapsed 30s | eta ?\n");
}

}  // namespace HSEQ_TEST_UNIT
