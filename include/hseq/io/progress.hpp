// SPDX-License-Identifier: MIT
/// @file
/// @brief `Progress`: a progress line for long training runs (step, loss, bpc, throughput, elapsed
/// time and ETA), redrawn in place on a terminal and printed as throttled plain lines otherwise.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iostream>
#include <limits>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

#if defined(_WIN32)
#include <io.h>
#else
#include <unistd.h>
#endif

#include "hseq/core/error.hpp"

namespace hseq::io {

namespace detail {

/// Whether `os` is std::cout / std::cerr / std::clog attached to a terminal; false for other streams.
inline bool stream_is_terminal(std::ostream const& os) {
#if defined(_WIN32)
  if (&os == &std::cout) return _isatty(_fileno(stdout)) != 0;
  if (&os == &std::cerr || &os == &std::clog) return _isatty(_fileno(stderr)) != 0;
#else
  if (&os == &std::cout) return isatty(fileno(stdout)) != 0;
  if (&os == &std::cerr || &os == &std::clog) return isatty(fileno(stderr)) != 0;
#endif
  return false;
}

}  // namespace detail

/// Seconds as "12s", "4m05s" or "1h02m03s" (rounded to the nearest second); "?" when not finite or
/// negative.
inline std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0.0 || seconds > 1e15) return "?";
  auto total = static_cast<long long>(std::llround(seconds));
  long long h = total / 3600, m = (total / 60) % 60, s = total % 60;
  char buf[64];
  if (h > 0)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm%02llds", h, m, s);
  else if (m > 0)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", m, s);
  else
    std::snprintf(buf, sizeof buf, "%llds", s);
  return buf;
}

/// A rate or count with an SI suffix: 999 -> "999", 12345 -> "12.3k", 4.56e6 -> "4.6M". Values below
/// 1000 print with no decimals; suffixed ones with one decimal.
inline std::string format_si(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  static char const* const kSuffix[] = {"", "k", "M", "G", "T", "P"};
  double a = std::fabs(v);
  int i = 0;
  // Pick the suffix after rounding, so 999.7 prints as "1.0k" rather than "1000".
  while (i < 5 && (i == 0 ? std::round(a) : std::round(a * 10.0) / 10.0) >= 1000.0) {
    a /= 1000.0;
    ++i;
  }
  char buf[64];
  if (i == 0)
    std::snprintf(buf, sizeof buf, "%.0f", v < 0 ? -a : a);
  else
    std::snprintf(buf, sizeof buf, "%.1f%s", v < 0 ? -a : a, kSuffix[i]);
  return buf;
}

/// Progress of a run of `total_steps` steps, written to a stream.
///
/// Interactive mode (a terminal): `update` redraws one line in place ('\r', the text, then ANSI
/// "\x1b[K" to clear what is left of the previous line), at most once per `refresh_interval_s`
/// (0.1 s). Plain mode (a file or a pipe): `update` prints a whole line at most once per
/// `plain_interval_s` (10 s). In both modes the first update and the final step (step >= total) always
/// print. The line reads
///
///     step 100/1000 | loss 1.2346 | bpc 1.7811 | 12.3k tok/s | elapsed 1m05s | eta 9m45s
///
/// and an update's optional `detail` text (the trainer's loss terms and last validation, "iem 2.1034
/// | val iem 2.2501") goes after the bpc field: "... | bpc nan | iem 2.1034 | val iem 2.2501 | ...".
/// where the ETA is (total - step) divided by the average step rate since the start (construction,
/// `set_clock` or `restart`), counting steps from `initial_step` (0 unless set: for resumed runs).
/// A total of 0 means "unknown" (a run bounded by time, say): the line shows "step N" and "eta ?", and
/// no step counts as the final one.
/// Times come from `now_s`, a steady clock unless replaced by `set_clock` (for tests).
class Progress {
 public:
  /// Interactive when `os` is std::cerr/std::clog on a terminal (isatty of stderr) or std::cout on a
  /// terminal (isatty of stdout); plain for every other stream.
  explicit Progress(std::int64_t total_steps, std::ostream& os = std::cerr)
      : Progress(total_steps, os, detail::stream_is_terminal(os)) {}

  Progress(std::int64_t total_steps, std::ostream& os, bool interactive)
      : total_(total_steps), os_(&os), interactive_(interactive), now_s_(&steady_seconds) {
    HSEQ_CHECK(total_steps >= 0, "Progress: negative total_steps " << total_steps);
    start_s_ = now_s_();
  }

  Progress(Progress const&) = delete;
  Progress& operator=(Progress const&) = delete;

  ~Progress() {
    try {
      finish();
    } catch (...) {
    }
  }

  /// Replaces the clock (seconds, any origin, non-decreasing) and restarts the timing from its now.
  void set_clock(std::function<double()> now_s) {
    HSEQ_CHECK(static_cast<bool>(now_s), "Progress::set_clock: empty clock");
    now_s_ = std::move(now_s);
    restart();
  }
  /// Restarts elapsed time and the rate average from now (the steps count from `initial_step`).
  void restart() {
    start_s_ = now_s_();
    last_print_s_ = -std::numeric_limits<double>::infinity();
  }
  /// The step the run starts from (a resumed run): the rate counts only the steps done since.
  void set_initial_step(std::int64_t step) { initial_step_ = step; }
  void set_plain_interval(double seconds) { plain_interval_s_ = seconds; }
  void set_refresh_interval(double seconds) { refresh_interval_s_ = seconds; }

  double plain_interval_s() const { return plain_interval_s_; }
  double refresh_interval_s() const { return refresh_interval_s_; }
  bool interactive() const { return interactive_; }
  std::int64_t total_steps() const { return total_; }

  /// Records the state after `step` steps; prints it when the throttle allows (see the class comment).
  /// `detail` is copied (into a buffer reused across updates).
  void update(std::int64_t step, double loss, double bpc, double tokens_per_s, std::string_view detail = {}) {
    double now = now_s_();
    last_.step = step;
    last_.loss = loss;
    last_.bpc = bpc;
    last_.tokens_per_s = tokens_per_s;
    last_.now = now;
    last_.valid = true;
    last_.detail.assign(detail);
    printed_last_ = false;
    double interval = interactive_ ? refresh_interval_s_ : plain_interval_s_;
    bool final_step = total_ > 0 && step >= total_;
    if (final_step || now - last_print_s_ >= interval) print_last();
  }

  /// Prints `text` on a line of its own; a progress line being shown is ended first and is redrawn
  /// by the next update.
  void message(std::string const& text) {
    if (showing_) {
      *os_ << '\n';
      showing_ = false;
      last_print_s_ = -std::numeric_limits<double>::infinity();
    }
    *os_ << text;
    if (text.empty() || text.back() != '\n') *os_ << '\n';
    os_->flush();
  }

  /// Prints the latest update if the throttle held it back, and ends the progress line. Idempotent.
  void finish() {
    if (last_.valid && !printed_last_) print_last();
    if (showing_) {
      *os_ << '\n';
      showing_ = false;
      os_->flush();
    }
  }

  /// The progress text for the given state, without '\r', ANSI codes or newline.
  std::string line(std::int64_t step, double loss, double bpc, double tokens_per_s, double now,
                   std::string_view detail = {}) const {
    double elapsed = now - start_s_;
    double done = static_cast<double>(step - initial_step_);
    double left = static_cast<double>(total_ - step);
    double eta = total_ == 0 ? -1.0 : left <= 0.0 ? 0.0 : (done > 0.0 && elapsed > 0.0 ? left * elapsed / done : -1.0);
    char num[64];
    std::string s = "step " + std::to_string(step);
    if (total_ > 0) s += "/" + std::to_string(total_);
    std::snprintf(num, sizeof num, "%.4f", loss);
    s += " | loss ";
    s += num;
    std::snprintf(num, sizeof num, "%.4f", bpc);
    s += " | bpc ";
    s += num;
    if (!detail.empty()) {
      s += " | ";
      s += detail;
    }
    s += " | " + format_si(tokens_per_s) + " tok/s";
    s += " | elapsed " + format_duration(elapsed);
    s += " | eta " + format_duration(eta);
    return s;
  }

 private:
  struct State {
    std::int64_t step = 0;
    double loss = 0, bpc = 0, tokens_per_s = 0, now = 0;
    bool valid = false;
    std::string detail;
  };

  static double steady_seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }

  void print_last() {
    std::string text = line(last_.step, last_.loss, last_.bpc, last_.tokens_per_s, last_.now, last_.detail);
    if (interactive_) {
      *os_ << '\r' << text << "\x1b[K";
      showing_ = true;
    } else {
      *os_ << text << '\n';
    }
    os_->flush();
    last_print_s_ = last_.now;
    printed_last_ = true;
  }

  std::int64_t total_;
  std::ostream* os_;
  bool interactive_;
  std::function<double()> now_s_;
  double start_s_ = 0.0;
  double last_print_s_ = -std::numeric_limits<double>::infinity();
  double plain_interval_s_ = 10.0;
  double refresh_interval_s_ = 0.1;
  std::int64_t initial_step_ = 0;
  State last_{};
  bool printed_last_ = false;
  bool showing_ = false;
};

}  // namespace hseq::io
